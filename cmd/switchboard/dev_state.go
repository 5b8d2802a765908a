package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/switchboard-rtc/switchboard/controllers/render"
)

// devStateFile is the file in --state-dir that keeps the generated
// credentials of every app, so IDs and secrets survive restarts.
const devStateFile = "apps.json"

// devState maps an app's "namespace/name" to its credentials, each stored
// under the same keys as the app's credentials Secret in a cluster.
type devState struct {
	path    string
	Apps    map[string]map[string]string `json:"apps"`
	changed bool
}

// openDevState reads dir/apps.json, or starts empty when it does not exist.
func openDevState(dir string) (*devState, error) {
	s := &devState{path: filepath.Join(dir, devStateFile), Apps: map[string]map[string]string{}}
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
		s.Apps = map[string]map[string]string{}
	}
	return s, nil
}

// creds returns the app's credentials. Missing or damaged ones are generated
// and remembered, as the operator fills an app's Secret; present ones never
// change. The TURN key is always generated so it is there when TURN is.
func (s *devState) creds(app string) (render.AppCredentials, error) {
	data := map[string][]byte{}
	for k, v := range s.Apps[app] {
		data[k] = []byte(v)
	}
	c, generated, err := render.FillCredentials(render.CredentialsFromSecretData(data), rand.Reader, true)
	if err != nil {
		return c, fmt.Errorf("credentials of %s: %w", app, err)
	}
	if generated {
		stored := map[string]string{}
		for k, v := range c.SecretData() {
			stored[k] = string(v)
		}
		s.Apps[app] = stored
		s.changed = true
	}
	return c, nil
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
