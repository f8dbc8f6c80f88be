package app

import (
	"time"

	"github.com/llm-proxy/llm-proxy/host/internal/hub"
	"github.com/llm-proxy/llm-proxy/host/internal/logquery"
	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
	"github.com/llm-proxy/llm-proxy/host/internal/requestlog"
)

// finishedEvents publishes every queued request log entry to the hub as
// request.finished, in the shape of a GET /api/logs row (bodies are never
// broadcast).
type finishedEvents struct{ h *hub.Hub }

func (f finishedEvents) Publish(e requestlog.Entry) {
	if !f.h.Active() {
		return
	}
	f.h.Publish(hub.RequestFinished, logquery.LogRow{
		ID: e.ID, TS: e.Time.UTC(), KeyID: e.KeyID,
		Model: e.Model, Provider: e.Provider, Plugin: e.Plugin, PluginVersion: e.PluginVersion,
		Status: e.Status, ErrorType: e.ErrorType,
		LatencyMS: float64(e.Latency) / float64(time.Millisecond), TTFBMS: float64(e.TTFB) / float64(time.Millisecond),
		Stream: e.Stream, PromptTokens: e.PromptTokens, CompletionTokens: e.CompletionTokens,
		CachedTokens: e.CachedTokens, CostUSD: e.CostUSD,
	})
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
