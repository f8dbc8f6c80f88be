package app

import (
	"github.com/llm-proxy/llm-proxy/host/internal/hub"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/requestlog"
	"github.com/llm-proxy/llm-proxy/host/internal/store/logquery"
)

// finishedEvents publishes every queued request log entry to the hub as
// request.finished, in the shape of a GET /api/logs row (bodies are never
// broadcast).
type finishedEvents struct{ h *hub.Hub }

func (f finishedEvents) Publish(e requestlog.Entry) {
	if !f.h.Active() {
		return
	}
	f.h.Publish(hub.RequestFinished, logquery.RowOf(&e.RequestLog)) // bodies are never broadcast
}

// pluginEvent names what happened to a plugin file.
func pluginEvent(in plugin.Info) string {
	switch {
	case in.State == "unloaded":
		return hub.PluginRemoved
	case in.LastError != "":
		return hub.PluginFailed
	case in.Reloads > 0:
		return hub.PluginReloaded
	}
	return hub.PluginLoaded
}
