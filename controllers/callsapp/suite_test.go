package callsapp_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
)

// env is the package's one API server, started by TestMain.
var env *testenv.Env

func TestMain(m *testing.M) {
	var err error
	env, err = testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "callsapp tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop envtest:", err)
	}
	os.Exit(code)
}
