module github.com/rbatch/rbatch

go 1.24

require (
	github.com/gomodule/redigo v1.9.3
	go.uber.org/goleak v1.3.0
	golang.org/x/sync v0.16.0
)

require (
	github.com/stretchr/testify v1.12.1
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)
