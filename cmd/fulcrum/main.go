// Command fulcrum runs Fulcrum's API, migrations, admin tasks and local stack.
package main

import (
	"os"

	"github.com/fulcrumlb/fulcrum/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
