// The Go net/http anchor: the article's stack (stdlib net/http, encoding/json,
// database/sql with lib/pq, SetMaxOpenConns(25) as the article sets it), serving the same
// benchmark routes as percore. Built by perf/bench.py in GOPATH mode with Debian's
// golang-go and golang-github-lib-pq-dev.
package main

import (
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"log"
	"math/rand"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	_ "github.com/lib/pq"
)

type message struct {
	Message string `json:"message"`
}

type world struct {
	ID           int32 `json:"id"`
	RandomNumber int32 `json:"randomNumber"`
}

type user struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"created_at"`
}

func main() {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8081"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/plaintext", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "go")
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("Hello, World!"))
	})
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "go")
		w.Header().Set("Content-Type", "application/json")
		body, _ := json.Marshal(message{Message: "Hello, World!"})
		w.Write(body)
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("OK"))
	})
	if url := os.Getenv("DATABASE_URL"); url != "" {
		db, err := sql.Open("postgres", url)
		if err != nil {
			log.Fatal(err)
		}
		// The article's pool settings.
		db.SetMaxOpenConns(25)
		db.SetMaxIdleConns(10)
		db.SetConnMaxLifetime(5 * time.Minute)
		mux.HandleFunc("/db", func(w http.ResponseWriter, r *http.Request) {
			var wd world
			err := db.QueryRowContext(r.Context(), "SELECT id, randomnumber FROM world WHERE id = $1", rand.Intn(10000)+1).Scan(&wd.ID, &wd.RandomNumber)
			if err != nil {
				http.Error(w, `{"error":"database"}`, http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Server", "go")
			w.Header().Set("Content-Type", "application/json")
			body, _ := json.Marshal(wd)
			w.Write(body)
		})
		// TechEmpower's multiple queries: N point reads, one after another, as a
		// database/sql handler makes them.
		mux.HandleFunc("/queries", func(w http.ResponseWriter, r *http.Request) {
			n, err := strconv.Atoi(r.URL.Query().Get("queries"))
			if err != nil || n < 1 {
				n = 1
			} else if n > 500 {
				n = 500
			}
			worlds := make([]world, n)
			for i := range worlds {
				err := db.QueryRowContext(r.Context(), "SELECT id, randomnumber FROM world WHERE id = $1", rand.Intn(10000)+1).Scan(&worlds[i].ID, &worlds[i].RandomNumber)
				if err != nil {
					http.Error(w, `{"error":"database"}`, http.StatusServiceUnavailable)
					return
				}
			}
			w.Header().Set("Server", "go")
			w.Header().Set("Content-Type", "application/json")
			body, _ := json.Marshal(worlds)
			w.Write(body)
		})
		mux.HandleFunc("/api/v1/users/", func(w http.ResponseWriter, r *http.Request) {
			id, err := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/api/v1/users/"), 10, 64)
			if err != nil || id <= 0 {
				http.Error(w, `{"error":"bad id"}`, http.StatusBadRequest)
				return
			}
			var u user
			err = db.QueryRowContext(r.Context(), "SELECT id, name, email, created_at FROM users WHERE id = $1", id).Scan(&u.ID, &u.Name, &u.Email, &u.CreatedAt)
			if err == sql.ErrNoRows {
				http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
				return
			} else if err != nil {
				http.Error(w, `{"error":"database"}`, http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			body, _ := json.Marshal(u)
			w.Write(body)
		})
	}
	log.Printf("listening on %s", addr)
	if cert := os.Getenv("TLS_CERT_FILE"); cert != "" {
		// crypto/tls, as a Go service terminating TLS itself would; TLS_TICKETS=off refuses
		// resumption (Go's server resumes by tickets only).
		srv := &http.Server{Addr: addr, Handler: mux, TLSConfig: &tls.Config{
			MinVersion:             tls.VersionTLS12,
			SessionTicketsDisabled: os.Getenv("TLS_TICKETS") == "off",
		}}
		log.Fatal(srv.ListenAndServeTLS(cert, os.Getenv("TLS_KEY_FILE")))
	}
	log.Fatal(http.ListenAndServe(addr, mux))
}
