package main

import (
	"context"
	"errors"
)

func init() {
	register("sfu", "not built yet", func(context.Context, []string) error {
		return errors.New("the sfu command is not built yet")
	})
}
