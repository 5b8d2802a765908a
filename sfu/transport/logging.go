package transport

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs sends Pion's logs to slog: Pion errors become warnings, Pion
// warnings become debug lines (remote peers trigger them at will, e.g. RTP
// for an unknown SSRC), and Pion's info, debug and trace are dropped.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) emit(level slog.Level, msg string) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, msg)
	}
}

func (l pionLogger) Trace(string)          {}
func (l pionLogger) Tracef(string, ...any) {}
func (l pionLogger) Debug(string)          {}
func (l pionLogger) Debugf(string, ...any) {}
func (l pionLogger) Info(string)           {}
func (l pionLogger) Infof(string, ...any)  {}
func (l pionLogger) Warn(msg string)       { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Warnf(format string, a ...any) {
	l.emit(slog.LevelDebug, fmt.Sprintf(format, a...))
}
func (l pionLogger) Error(msg string) { l.emit(slog.LevelWarn, msg) }
func (l pionLogger) Errorf(format string, a ...any) {
	if l.log.Enabled(context.Background(), slog.LevelWarn) {
		l.emit(slog.LevelWarn, fmt.Sprintf(format, a...))
	}
}
