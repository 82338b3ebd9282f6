module github.com/objsync/objsync

go 1.26
