module github.com/rbatch/rbatch/bench

go 1.24

require (
	github.com/gomodule/redigo v1.9.3
	github.com/rbatch/rbatch v0.0.0
	github.com/redis/go-redis/v9 v9.22.0
	github.com/redis/rueidis v1.0.69
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/sync v0.16.0 // indirect
	golang.org/x/sys v0.31.0 // indirect
)

replace github.com/rbatch/rbatch => ../
