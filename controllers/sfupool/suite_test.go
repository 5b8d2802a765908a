package sfupool_test

import (
	"testing"

	"github.com/switchboard-rtc/switchboard/controllers/internal/testenv"
)

// env is the package's one API server, started by TestMain.
var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, "sfupool", &env) }
