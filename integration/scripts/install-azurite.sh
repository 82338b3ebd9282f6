#!/usr/bin/env bash
# Installs Azurite, the Azure Blob Storage emulator (the npm package pinned
# in images/versions.env), into the cache when it is missing, and prints the
# folder that holds its node_modules: the value of OBJSYNC_AZURITE for the
# integration tests, which run it as a process on 127.0.0.1.
#
# Node.js and npm come from Debian's packages when missing (as root). The
# cache is ${OBJSYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/objsync}/azurite/VERSION,
# outside the repository; delete it to install again.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${OBJSYNC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/objsync}"

# shellcheck source=SCRIPTDIR/../images/versions.env
source "$here/../images/versions.env"

log() { printf 'install-azurite: %s\n' "$*" >&2; }

dir="$cache/azurite/$AZURITE_VERSION"
if [[ ! -x "$dir/node_modules/.bin/azurite-blob" ]]; then
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		if [[ "$(id -u)" != 0 ]]; then
			log "Node.js and npm are missing: install them (on Debian, as root: apt-get install nodejs npm)"
			exit 1
		fi
		log "installing nodejs and npm"
		# The package lists may be absent or stale on a fresh machine.
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
	fi
	log "installing azurite@$AZURITE_VERSION (cached in $dir)"
	start=$SECONDS
	mkdir -p "$cache/azurite"
	partial="$(mktemp -d "$cache/azurite/.partial.XXXXXX")"
	trap 'rm -rf "$partial"' EXIT
	npm install --prefix "$partial" --no-audit --no-fund --no-save --loglevel=error \
		"azurite@$AZURITE_VERSION" >&2
	rm -rf "$dir"
	mv "$partial" "$dir" # last, and atomic: an installed folder is whole
	log "installed azurite@$AZURITE_VERSION in $((SECONDS - start))s"
fi
printf '%s\n' "$dir"
