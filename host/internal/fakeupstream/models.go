package fakeupstream

import (
	"encoding/json"
	"net/http"
)

// modelIDs lists the models GET /v1/models returns.
var modelIDs = []string{
	"gpt-4o-mini",
	"gpt-4o",
	"text-embedding-3-small",
	"fake-echo",
}

// ModelIDs returns the ids GET /v1/models lists. Chat and embedding requests
// accept any model name, listed or not.
func ModelIDs() []string { return append([]string(nil), modelIDs...) }

// modelCreated is the fixed creation time reported for every model.
const modelCreated = 1700000000

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

var (
	modelListBody []byte
	modelBodies   = map[string][]byte{}
)

func init() {
	list := struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{Object: "list"}
	for _, id := range modelIDs {
		m := modelObject{ID: id, Object: "model", Created: modelCreated, OwnedBy: "fake"}
		list.Data = append(list.Data, m)
		b, err := json.Marshal(m)
		if err != nil {
			panic(err)
		}
		modelBodies[id] = b
	}
	b, err := json.Marshal(list)
	if err != nil {
		panic(err)
	}
	modelListBody = b
}

func (s *Server) handleModel(w http.ResponseWriter, id string) {
	b, ok := modelBodies[id]
	if !ok {
		writeError(w, http.StatusNotFound, "The model '"+id+"' does not exist", typeInvalidRequest, "model", "model_not_found")
		return
	}
	writeJSON(w, http.StatusOK, b, s.requestID())
}
