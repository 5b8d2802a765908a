package main

import (
	"context"
	"errors"
)

func init() {
	register("manager", "not built yet", func(context.Context, []string) error {
		return errors.New("the manager command is not built yet")
	})
}
