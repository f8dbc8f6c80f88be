package logquery

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultUsageRange is the time range of a usage query without from and
// to: the last 24 hours; DefaultMinuteRange is the one by the minute.
const (
	DefaultUsageRange  = 24 * time.Hour
	DefaultMinuteRange = time.Hour
)

// maxMilli is the last millisecond of year 9999, the latest time RFC 3339
// (and so JSON) can write.
const maxMilli = 253402300799999

// ParseLogFilter reads a [LogFilter] from the query parameters of the logs
// endpoint:
//
//	from, to   the time range, From included and To excluded: RFC 3339
//	           ("2025-01-02T15:04:05Z", offsets and fractions allowed) or
//	           Unix milliseconds ("1735830245000")
//	key        a key id, or "admin" for the admin key
//	model      a model name, as logged
//	provider   a provider name
//	status     a status code from 100 to 599, or a class "1xx" to "5xx"
//	limit      the page size, 1 to 500 (default 50)
//	cursor     the next_cursor of the previous page
//
// An absent or empty parameter sets nothing. Other parameters are ignored.
// A bad value, a parameter given twice, or a "from" not before "to" is an
// error wrapping [ErrBadFilter]; it is a [*FilterError] naming the
// parameter. Parameters are checked in the order above and the first bad
// one is reported.
func ParseLogFilter(q url.Values) (LogFilter, error) {
	var (
		f   LogFilter
		err error
	)
	if f.From, f.To, err = timeRange(q); err != nil {
		return LogFilter{}, err
	}
	if f.KeyID, f.Model, f.Provider, err = dimensionParams(q); err != nil {
		return LogFilter{}, err
	}
	status, err := param(q, "status")
	if err != nil {
		return LogFilter{}, err
	}
	if status != "" {
		if _, ok := statusClass(status); ok {
			f.StatusClass = strings.ToLower(status)
		} else if n, err := strconv.Atoi(status); err == nil && n >= 100 && n <= 599 {
			f.Status = n
		} else {
			return LogFilter{}, badValue("status", status, `must be a status code from 100 to 599 or one of "1xx" to "5xx"`)
		}
	}
	f.Limit = DefaultLimit
	limit, err := param(q, "limit")
	if err != nil {
		return LogFilter{}, err
	}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > MaxLimit {
			return LogFilter{}, badValue("limit", limit, "must be a whole number from 1 to "+strconv.Itoa(MaxLimit))
		}
		f.Limit = n
	}
	if f.Cursor, err = param(q, "cursor"); err != nil {
		return LogFilter{}, err
	}
	if f.Cursor != "" {
		if _, _, err := decodeCursor(f.Cursor); err != nil {
			return LogFilter{}, err
		}
	}
	return f, nil
}

// ParseUsageQuery reads a [UsageQuery] from the query parameters of the
// usage endpoint:
//
//	from, to    the time range, as for ParseLogFilter; without either, the
//	            last 24 hours; with only from, everything since then; with
//	            only to, the 24 hours before it (not the whole log). By the
//	            minute, the default range is one hour: the last hour, or
//	            the hour after from or before to
//	bucket      "hour" (the default), "day" or "minute"
//	group_by    "key", "model" or "provider"; absent for no grouping
//	key, model, provider
//	            exact filters, as for ParseLogFilter
//
// Errors are as for [ParseLogFilter]; by the minute, a range longer than
// MaxMinuteRange is an error too.
func ParseUsageQuery(q url.Values) (UsageQuery, error) {
	return parseUsageQuery(q, time.Now())
}

// parseUsageQuery is ParseUsageQuery with the current time given.
func parseUsageQuery(q url.Values, now time.Time) (UsageQuery, error) {
	var (
		u   UsageQuery
		err error
	)
	if u.From, u.To, err = timeRange(q); err != nil {
		return UsageQuery{}, err
	}
	if u.Bucket, err = param(q, "bucket"); err != nil {
		return UsageQuery{}, err
	}
	if u.Bucket == "" {
		u.Bucket = BucketHour
	}
	if _, ok := bucketSizes[u.Bucket]; !ok {
		return UsageQuery{}, badValue("bucket", u.Bucket, `must be "hour", "day" or "minute"`)
	}
	span := DefaultUsageRange
	if u.Bucket == BucketMinute {
		span = DefaultMinuteRange
	}
	switch {
	case u.From.IsZero() && u.To.IsZero():
		u.To = now.UTC()
		u.From = u.To.Add(-span)
	case u.From.IsZero():
		u.From = u.To.Add(-span)
	case u.To.IsZero() && u.Bucket == BucketMinute:
		u.To = u.From.Add(span)
	}
	if u.Bucket == BucketMinute && u.To.Sub(u.From) > MaxMinuteRange {
		return UsageQuery{}, badValue("to", q.Get("to"), "must be at most "+MaxMinuteRange.String()+` after "from" by the minute`)
	}
	if u.GroupBy, err = param(q, "group_by"); err != nil {
		return UsageQuery{}, err
	}
	if !groupings[u.GroupBy] {
		return UsageQuery{}, badValue("group_by", u.GroupBy, `must be "key", "model" or "provider"`)
	}
	if u.KeyID, u.Model, u.Provider, err = dimensionParams(q); err != nil {
		return UsageQuery{}, err
	}
	return u, nil
}

// param returns the value of the query parameter name, "" when absent, and
// an error when it is given more than once: a client that sends two models
// expects something this API does not do.
func param(q url.Values, name string) (string, error) {
	vs := q[name]
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	default:
		return "", badValue(name, strings.Join(vs, ","), "must be given at most once")
	}
}

// timeRange reads from and to, and checks that from comes before to when
// both are given.
func timeRange(q url.Values) (from, to time.Time, err error) {
	if from, err = timeParam(q, "from"); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if to, err = timeParam(q, "to"); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return time.Time{}, time.Time{}, badValue("to", q.Get("to"), `must be later than "from"`)
	}
	return from, to, nil
}

// timeParam reads a time given in RFC 3339 or in Unix milliseconds.
//
// An unescaped "+" in a query string decodes to a space, which turns the
// offset of "2025-01-02T15:04:05+01:00" into " 01:00". A time has no
// space, so timeParam reads a space as the "+" the client meant.
func timeParam(q url.Values, name string) (time.Time, error) {
	s, err := param(q, name)
	if err != nil || s == "" {
		return time.Time{}, err
	}
	const reason = "must be an RFC 3339 time or Unix milliseconds"
	if isDigits(s) {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms > maxMilli {
			return time.Time{}, badValue(name, s, reason)
		}
		return fromMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, strings.ReplaceAll(s, " ", "+"))
	if err != nil {
		return time.Time{}, badValue(name, s, reason)
	}
	return t.UTC(), nil
}

// dimensionParams reads key, model and provider.
func dimensionParams(q url.Values) (key, model, provider string, err error) {
	if key, err = param(q, "key"); err != nil {
		return "", "", "", err
	}
	if model, err = param(q, "model"); err != nil {
		return "", "", "", err
	}
	if provider, err = param(q, "provider"); err != nil {
		return "", "", "", err
	}
	return key, model, provider, nil
}

// isDigits reports whether s is a non-empty run of ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
