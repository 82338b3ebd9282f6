#!/usr/bin/env bash
# Builds the local test images objsync-test/{minio,ceph,fake-gcs,seaweedfs}:latest.
#
# Nothing is pulled (no registry is needed): MinIO, fake-gcs-server and
# SeaweedFS are built from the Go module proxy into FROM-scratch images, Ceph
# is a Debian root filesystem made with mmdebstrap and "docker import"ed.
#
# An image is rebuilt only when its recipe changed: the hash of its folder
# under integration/images, versions.env and this script is stored as the
# image label objsync.recipe and compared. The slow artefacts (Go binaries,
# Ceph tarball) are cached by version outside the repository, in
# ${OBJSYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/objsync}.
#
# Usage: build-images.sh [minio|ceph|fake-gcs|seaweedfs ...]   (default: all)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
images_dir="$(cd "$here/../images" && pwd)"
cache="${OBJSYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/objsync}"

# shellcheck source=SCRIPTDIR/../images/versions.env
source "$images_dir/versions.env"

log() { printf 'build-images: %s\n' "$*" >&2; }

# quiet COMMAND...: run COMMAND, show its output only if it fails (docker
# build warns about its legacy builder, apt-get chatters on stderr).
quiet() {
	local out status=0
	out="$(mktemp)"
	"$@" >"$out" 2>&1 || status=$?
	if ((status != 0)); then
		cat "$out" >&2
	fi
	rm -f "$out"
	return "$status"
}

# recipe_hash NAME: hash of what the image NAME is made from.
recipe_hash() {
	(
		cd "$images_dir"
		find "$1" -type f -print0 | sort -z | xargs -0 sha256sum
		sha256sum versions.env
		sha256sum <"$here/build-images.sh"
	) | sha256sum | cut -c1-16
}

# up_to_date IMAGE HASH: the image exists and was built from this recipe.
up_to_date() {
	local have
	have="$(docker image inspect -f '{{index .Config.Labels "objsync.recipe"}}' "$1" 2>/dev/null || true)"
	[[ "$have" == "$2" ]]
}

# go_binary MODULE VERSION NAME: path of a static binary of MODULE@VERSION,
# built once per version into the cache.
go_binary() {
	local module="$1" version="$2" name="$3"
	local dir="$cache/$name/$version"
	if [[ ! -x "$dir/$name" ]]; then
		log "building $module@$version (cached in $dir)"
		local tmp
		tmp="$(mktemp -d)"
		# Run outside any module so only the pinned version's go.mod counts.
		(cd "$tmp" && GOBIN="$tmp/bin" CGO_ENABLED=0 GOFLAGS=-trimpath \
			go install -ldflags='-s -w' "$module@$version")
		mkdir -p "$dir"
		mv "$tmp/bin/$name" "$dir/$name.partial"
		mv "$dir/$name.partial" "$dir/$name" # atomic: no half-written binary
		rm -rf "$tmp"
	fi
	printf '%s\n' "$dir"
}

# go_module_binary MODULE VERSION PACKAGE NAME: path of a static binary of
# PACKAGE (a path inside MODULE), built once per version into the cache
# from the module's own folder. For modules whose go.mod has replace lines,
# which "go install MODULE@VERSION" refuses.
go_module_binary() {
	local module="$1" version="$2" package="$3" name="$4"
	local dir="$cache/$name/$version"
	if [[ ! -x "$dir/$name" ]]; then
		log "building $module@$version (cached in $dir)"
		local src
		src="$(cd "$(mktemp -d)" && go mod download -json "$module@$version" |
			awk -F'"' '$2 == "Dir" { print $4 }')"
		if [[ -z "$src" ]]; then
			log "go mod download $module@$version gave no folder"
			return 1
		fi
		mkdir -p "$dir"
		# The module cache is read-only: the module's go.sum is used as is.
		(cd "$src" && CGO_ENABLED=0 GOFLAGS='-trimpath -mod=readonly' \
			go build -ldflags='-s -w' -o "$dir/$name.partial" "$package")
		mv "$dir/$name.partial" "$dir/$name" # atomic: no half-written binary
	fi
	printf '%s\n' "$dir"
}

# build_scratch NAME BINARY_DIR VERSION HASH: docker build of a FROM-scratch
# image whose context is the folder holding the cached binary.
build_scratch() {
	quiet docker build -q \
		--label "objsync.recipe=$4" \
		--label "objsync.version=$3" \
		-t "objsync-test/$1:latest" \
		-f "$images_dir/$1/Dockerfile" "$2"
}

build_minio() {
	local dir
	dir="$(go_binary github.com/minio/minio "$MINIO_VERSION" minio)"
	build_scratch minio "$dir" "$MINIO_VERSION" "$1"
}

build_fake_gcs() {
	local dir
	dir="$(go_binary github.com/fsouza/fake-gcs-server "$FAKE_GCS_VERSION" fake-gcs-server)"
	build_scratch fake-gcs "$dir" "$FAKE_GCS_VERSION" "$1"
}

build_seaweedfs() {
	local dir
	dir="$(go_module_binary github.com/seaweedfs/seaweedfs "$SEAWEEDFS_VERSION" ./weed weed)"
	build_scratch seaweedfs "$dir" "$SEAWEEDFS_VERSION" "$1"
}

build_ceph() {
	# Documentation is dropped: it is a fifth of the tree and no test reads it.
	local mm_opts=(
		--variant=apt
		"--include=$CEPH_PACKAGES"
		--dpkgopt='path-exclude=/usr/share/doc/*'
		--dpkgopt='path-exclude=/usr/share/man/*'
		--dpkgopt='path-exclude=/usr/share/locale/*'
	)
	local key dir
	key="$CEPH_SUITE-$(printf '%s\n' "${mm_opts[@]}" | sha256sum | cut -c1-12)"
	dir="$cache/ceph/$key"
	if [[ ! -s "$dir/rootfs.tar" ]]; then
		if ! command -v mmdebstrap >/dev/null 2>&1; then
			if [[ "$(id -u)" != 0 ]]; then
				log "mmdebstrap is missing: install the Debian package mmdebstrap (as root: apt-get install mmdebstrap)"
				return 1
			fi
			log "installing mmdebstrap"
			# The package lists may be absent or stale on a fresh machine.
			quiet apt-get update
			DEBIAN_FRONTEND=noninteractive quiet apt-get install -y mmdebstrap
		fi
		log "making the Ceph root filesystem from Debian $CEPH_SUITE (cached in $dir)"
		mkdir -p "$dir"
		local partial="$dir/rootfs.partial.tar" # mmdebstrap picks the format by extension
		rm -f "$partial"
		# No mirror argument: mmdebstrap uses the machine's own apt setup.
		mmdebstrap -q --format=tar "${mm_opts[@]}" "$CEPH_SUITE" "$partial"
		# The version that will really run, for the image label and the README.
		# awk reads to the end: tar killed by SIGPIPE would fail the pipe.
		tar -xOf "$partial" ./var/lib/dpkg/status |
			awk '/^Package: / {p = ($2 == "radosgw")} p && /^Version:/ {v = $2} END {print v}' >"$dir/ceph-version"
		mv "$partial" "$dir/rootfs.tar" # last: a cached tarball is always whole
	fi
	local version
	version="$(cat "$dir/ceph-version")"
	if [[ "$version" != "$CEPH_EXPECTED_VERSION_PREFIX"* ]]; then
		log "Debian $CEPH_SUITE gives Ceph $version, expected $CEPH_EXPECTED_VERSION_PREFIX*: update versions.env"
		return 1
	fi
	local base="objsync-test/ceph-rootfs:$key"
	if ! docker image inspect "$base" >/dev/null 2>&1; then
		log "importing $dir/rootfs.tar as $base"
		quiet docker import "$dir/rootfs.tar" "$base"
	fi
	quiet docker build -q \
		--build-arg "BASE=$base" \
		--label "objsync.recipe=$1" \
		--label "objsync.version=$version" \
		-t objsync-test/ceph:latest \
		"$images_dir/ceph"
}

names=("$@")
if ((${#names[@]} == 0)); then
	names=(minio ceph fake-gcs seaweedfs)
fi

for name in "${names[@]}"; do
	case "$name" in
	minio | ceph | fake-gcs | seaweedfs) ;;
	*)
		log "unknown image $name (want minio, ceph, fake-gcs or seaweedfs)"
		exit 2
		;;
	esac
	hash="$(recipe_hash "$name")"
	if up_to_date "objsync-test/$name:latest" "$hash"; then
		continue
	fi
	start=$SECONDS
	old_id="$(docker image inspect -f '{{.Id}}' "objsync-test/$name:latest" 2>/dev/null || true)"
	log "building objsync-test/$name:latest (recipe $hash)"
	"build_${name//-/_}" "$hash"
	# The image this one replaces is left untagged: remove it, unless a
	# container still uses it.
	if [[ -n "$old_id" && "$old_id" != "$(docker image inspect -f '{{.Id}}' "objsync-test/$name:latest")" ]]; then
		docker rmi "$old_id" >/dev/null 2>&1 || true
	fi
	log "built objsync-test/$name:latest in $((SECONDS - start))s"
done
