package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// ErrProbe reports a failed in-cluster probe.
var ErrProbe = errors.New("probe failed")

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount/"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		if err := probe(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "hello:", err)
			os.Exit(1)
		}
		return
	}
	serve()
}

func serve() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "hello from %s\n", host) })
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	slog.Info("hello listening", "port", port, "host", host)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		slog.Error("hello serve failed", "err", err)
		os.Exit(1)
	}
	slog.Info("hello stopped")
}

// probe checks, from inside a pod, what workloads of the cluster rely on:
// the API server through the kubernetes Service with the pod's token (it
// prints the user the server saw), and each URL given (a Service, say).
func probe(urls []string) error {
	user, err := whoAmI()
	if err != nil {
		return err
	}
	fmt.Printf("PROBE apiserver user=%s\n", user)
	c := &http.Client{Timeout: 3 * time.Second}
	for _, u := range urls {
		resp, err := c.Get(u)
		if err != nil {
			return fmt.Errorf("%w: GET %s: %v", ErrProbe, u, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%w: GET %s: status %d, read err %v", ErrProbe, u, resp.StatusCode, err)
		}
		fmt.Printf("PROBE %s %s\n", u, strings.TrimSpace(string(body)))
	}
	return nil
}

// whoAmI posts a SelfSubjectReview to the API server at the address the
// kubelet injects, trusting the cluster CA, and returns the username.
func whoAmI() (string, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return "", fmt.Errorf("%w: KUBERNETES_SERVICE_HOST/PORT not set", ErrProbe)
	}
	token, err := os.ReadFile(saDir + "token")
	if err != nil {
		return "", fmt.Errorf("%w: read token: %v", ErrProbe, err)
	}
	ca, err := os.ReadFile(saDir + "ca.crt")
	if err != nil {
		return "", fmt.Errorf("%w: read ca: %v", ErrProbe, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return "", fmt.Errorf("%w: no certificate in ca.crt", ErrProbe)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := "https://" + net.JoinHostPort(host, port) + "/apis/authentication.k8s.io/v1/selfsubjectreviews"
	reqBody := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(reqBody))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrProbe, err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: POST %s: %v", ErrProbe, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", fmt.Errorf("%w: read review: %v", ErrProbe, err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%w: POST %s: status %d: %.200s", ErrProbe, url, resp.StatusCode, body)
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &review); err != nil {
		return "", fmt.Errorf("%w: decode review: %v", ErrProbe, err)
	}
	return review.Status.UserInfo.Username, nil
}
