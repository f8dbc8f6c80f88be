package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/llm-proxy/llm-proxy/host/internal/plugin"
)

// scraped reads the counts other parts keep, at each scrape.
type scraped struct{ src Sources }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	pluginLabels     = []string{"plugin", "version"}
	descPluginReady  = desc("llmproxy_plugin_ready", "1 when the plugin file has a version serving, 0 when it failed to load.", "plugin")
	descReloads      = desc("llmproxy_plugin_reloads_total", "New versions of the plugin file loaded since the start.", "plugin")
	descInstances    = desc("llmproxy_plugin_instances", "Live instances of the plugin version.", pluginLabels...)
	descStreamsOpen  = desc("llmproxy_plugin_streams", "Streams open on the plugin version's instances.", pluginLabels...)
	descStreamsTotal = desc("llmproxy_plugin_streams_total", "Streams opened on the plugin version.", pluginLabels...)
	descCallbacks    = desc("llmproxy_plugin_callbacks_total", "Guest callbacks run by the plugin version.", pluginLabels...)
	descCallbackTime = desc("llmproxy_plugin_callback_duration_seconds", "How long the plugin version's callbacks ran.", pluginLabels...)
	descTraps        = desc("llmproxy_plugin_traps_total", "Callbacks that trapped, returned an error or broke the guest; each costs its instance.", pluginLabels...)
	descTimeouts     = desc("llmproxy_plugin_timeouts_total", "Callbacks stopped at their deadline; each costs its instance.", pluginLabels...)
	descCreated      = desc("llmproxy_plugin_instances_created_total", "Instances of the plugin version started.", pluginLabels...)

	descInFlight = desc("llmproxy_requests_in_flight", "Requests to /v1 being served.")

	descLogQueue   = desc("llmproxy_request_log_queue_depth", "Request log rows waiting for the writer.")
	descLogWritten = desc("llmproxy_request_log_rows_written_total", "Request log rows stored.")
	descLogDropped = desc("llmproxy_request_log_rows_dropped_total", "Request log rows refused because the queue was full.")
	descLogFailed  = desc("llmproxy_request_log_rows_failed_total", "Request log rows queued but never stored (their batch failed every try).")

	descSubscribers = desc("llmproxy_ws_subscribers", "Dashboard WebSocket connections receiving events.")
	descCutOff      = desc("llmproxy_ws_subscribers_cut_off_total", "WebSocket subscribers dropped for falling behind.")

	descBreaker = desc("llmproxy_breaker_state", "1 for each target's circuit breaker state (closed, half_open or open), 0 for the others.", "target", "state")
)

var breakerStates = [...]string{"closed", "half_open", "open"}

func (c *scraped) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInFlight, descPluginReady, descReloads, descInstances, descStreamsOpen, descStreamsTotal, descCallbacks,
		descCallbackTime, descTraps, descTimeouts, descCreated, descLogQueue, descLogWritten, descLogDropped, descLogFailed,
		descSubscribers, descCutOff, descBreaker} {
		ch <- d
	}
}

func (c *scraped) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if c.src.InFlight != nil {
		gauge(descInFlight, float64(c.src.InFlight()))
	}
	if c.src.Plugins != nil {
		for _, p := range c.src.Plugins() {
			name := p.Name
			if name == "" {
				name = p.File // never loaded: its manifest was not read
			}
			ready := 0.0
			if p.Version != "" && p.LoadedAt != nil {
				ready = 1
			}
			gauge(descPluginReady, ready, name)
			counter(descReloads, float64(p.Reloads), name)
			if p.Version == "" {
				continue
			}
			st := p.Instances
			gauge(descInstances, float64(st.Instances), name, p.Version)
			gauge(descStreamsOpen, float64(st.Streams), name, p.Version)
			counter(descStreamsTotal, float64(st.StreamsTotal), name, p.Version)
			counter(descCallbacks, float64(st.Callbacks), name, p.Version)
			counter(descTraps, float64(st.Traps), name, p.Version)
			counter(descTimeouts, float64(st.Timeouts), name, p.Version)
			counter(descCreated, float64(st.Created), name, p.Version)
			if h := callbackHistogram(st.CallbackDurations, name, p.Version); h != nil {
				ch <- h
			}
		}
	}
	if c.src.RequestLog != nil {
		st := c.src.RequestLog()
		gauge(descLogQueue, float64(st.QueueLen))
		counter(descLogWritten, float64(st.Written))
		counter(descLogDropped, float64(st.Dropped))
		counter(descLogFailed, float64(st.Failed))
	}
	if c.src.Hub != nil {
		st := c.src.Hub()
		gauge(descSubscribers, float64(st.Subscribers))
		counter(descCutOff, float64(st.CutOff))
	}
	if c.src.Breakers != nil {
		for _, h := range c.src.Breakers() {
			for _, s := range breakerStates {
				v := 0.0
				if h.State == s {
					v = 1
				}
				gauge(descBreaker, v, h.Target, s)
			}
		}
	}
}

// callbackHistogram turns the runtime's bucket counts into a cumulative
// Prometheus histogram.
func callbackHistogram(d plugin.Durations, name, version string) prometheus.Metric {
	if len(d.Counts) != len(plugin.CallbackBuckets)+1 {
		return nil
	}
	buckets := make(map[float64]uint64, len(plugin.CallbackBuckets))
	var total uint64
	for i, bound := range plugin.CallbackBuckets {
		total += uint64(d.Counts[i])
		buckets[bound.Seconds()] = total
	}
	total += uint64(d.Counts[len(d.Counts)-1])
	return prometheus.MustNewConstHistogram(descCallbackTime, total, d.Sum.Seconds(), buckets, name, version)
}
