package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// devStateFile is the file in --state-dir that keeps the generated
// credentials of every app, so IDs and secrets survive restarts.
const devStateFile = "apps.json"

// devCreds are the generated credentials of one app in dev mode: what the
// operator keeps in the app's Secret in a cluster.
type devCreds struct {
	AppID     string `json:"appId"`
	Secret    string `json:"secret"`
	TURNKeyID string `json:"turnKeyId"`
	// TURNToken is the bearer token of the TURN credentials API.
	TURNToken string `json:"turnToken"`
	// TURNHMACSecret signs the ephemeral TURN credentials.
	TURNHMACSecret string `json:"turnHMACSecret"`
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (c devCreds) valid() bool {
	return hex32.MatchString(c.AppID) && len(c.Secret) >= 32 && hex32.MatchString(c.TURNKeyID) &&
		len(c.TURNToken) >= 32 && len(c.TURNHMACSecret) >= 32
}

// devState maps an app's "namespace/name" to its credentials.
type devState struct {
	path    string
	Apps    map[string]devCreds `json:"apps"`
	changed bool
}

// openDevState reads dir/apps.json, or starts empty when it does not exist.
func openDevState(dir string) (*devState, error) {
	s := &devState{path: filepath.Join(dir, devStateFile), Apps: map[string]devCreds{}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dev state: %w", err)
	}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("read dev state %s: %w (delete it to start over)", s.path, err)
	}
	if s.Apps == nil {
		s.Apps = map[string]devCreds{}
	}
	return s, nil
}

// creds returns the app's credentials, generating and remembering new ones
// for an app seen for the first time (or whose stored ones are damaged).
func (s *devState) creds(app string) devCreds {
	if c, ok := s.Apps[app]; ok && c.valid() {
		return c
	}
	c := devCreds{AppID: randomHex(16), Secret: randomHex(32), TURNKeyID: randomHex(16),
		TURNToken: randomHex(32), TURNHMACSecret: randomHex(32)}
	s.Apps[app] = c
	s.changed = true
	return c
}

// save writes the state when something was generated. The file holds
// secrets, so it is private to the user.
func (s *devState) save() error {
	if !s.changed {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("save dev state: %w", err)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("save dev state: %w", err)
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save dev state: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("save dev state: %w", err)
	}
	s.changed = false
	return nil
}

// randomHex returns n random bytes as lowercase hex. crypto/rand.Read never
// fails on the platforms Go supports.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
