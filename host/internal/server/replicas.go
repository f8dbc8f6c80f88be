package server

import "time"

// Replica is one proxy process on the database, as GET /api/replicas
// lists it: every replica of a fleet on PostgreSQL, or this one alone.
type Replica struct {
	ID        string          `json:"id"`
	Hostname  string          `json:"hostname"`
	Version   string          `json:"version"`
	StartedAt time.Time       `json:"started_at"`
	SeenAt    time.Time       `json:"seen_at"`
	Self      bool            `json:"self"`
	Plugins   []ReplicaPlugin `json:"plugins"`
}

// ReplicaPlugin is a plugin a replica runs.
type ReplicaPlugin struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	State   string `json:"state"`
}
