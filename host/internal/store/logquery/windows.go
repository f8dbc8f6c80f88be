package logquery

import (
	"context"
	"database/sql"
	"slices"

	"github.com/jmoiron/sqlx"

	"github.com/llm-proxy/llm-proxy/host/internal/store"
)

// # Pages of two conditions or more
//
// SQLite reads a page through one index: for "key_a and gpt-4o" it walks
// the (key_id, ts) index, newest first, and drops the rows of other
// models. That is fast while the rows of key_a are mostly gpt-4o ones,
// and slow when they are rare: a key and a model it never used made it
// read all of the key's rows, a quarter of a million of them, before
// answering with an empty page (half a second at a million rows).
//
// The usage rollups know, per hour and per day, how many requests each
// key, model and provider made, and how many ended with 4xx and 5xx. So
// for a filter of two conditions or more, windowedLogs first asks them
// where the matching rows are: it walks the rollup buckets that match
// the filter from the newest down and adds up their requests until they
// hold a page, which gives the oldest time the page can reach. It then
// reads the rows from that time on, through the indexes as before but
// bounded below, and skips the hours and days without a match entirely.
// Whole days already summed are walked through their day rows (30 rows
// for a month), and only the day where the page ends is opened into
// hours.
//
// The counts are exact for the key, model and provider, and an upper
// bound for a status (the rollups count classes 4xx and 5xx, not single
// statuses): when a window holds fewer matches than counted, the walk
// goes on below it. The rollups are written in the same transactions as
// the rows, and both are read here from one snapshot.

// windowedLogs reads the rows of one page for a filter of two conditions
// or more, newest first: up to limit+1 of them, and returns them with the
// page size.
func windowedLogs(ctx context.Context, tx *sqlx.Tx, f LogFilter, statuses []int) ([]store.RequestLog, int, error) {
	_, _, limit, err := logsQuery(f, statuses)
	if err != nil {
		return nil, 0, err
	}
	lo, hi := int64(openStart), int64(openEnd)
	if !f.From.IsZero() {
		lo = ceilMilli(f.From)
	}
	if !f.To.IsZero() {
		hi = ceilMilli(f.To)
	}
	if f.Cursor != "" {
		ts, _, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, 0, err
		}
		hi = min(hi, ts+1)
	}
	if lo >= hi {
		return nil, limit, nil
	}
	w, err := newWalker(ctx, tx, f, lo, hi)
	if err != nil {
		return nil, 0, err
	}
	need := limit + 1
	var rows []store.RequestLog
	top := int64(openEnd) // the first window is bounded by the filter
	var counted, matched int64
	for len(rows) < need {
		// When the counts overstate the matches (a status among its
		// class), ask for as many more as the share seen so far says.
		ask := int64(need - len(rows))
		if matched < counted {
			ask = min(ask*counted/max(matched, 1), ask*64)
		}
		start, n, found, more, err := w.next(ctx, ask)
		if err != nil || !found {
			return rows, limit, err
		}
		query, args, _, err := logsQueryIn(f, statuses, start, top, need-len(rows))
		if err != nil {
			return nil, 0, err
		}
		var got []store.RequestLog
		if err := tx.SelectContext(ctx, &got, query, args...); err != nil {
			return nil, 0, err
		}
		rows = append(rows, got...)
		counted += n
		matched += int64(len(got))
		if !more {
			break
		}
		top = start
	}
	return rows, limit, nil
}

// walkItem is one rollup bucket that holds matching requests.
type walkItem struct {
	period, bucket, count int64
}

// walker hands out the windows of windowedLogs, from the newest down.
type walker struct {
	tx    *sqlx.Tx
	dims  where  // the conditions on key, model and provider
	count string // the SQL expression that counts the matches of a rollup
	lo    int64
	items []walkItem // newest first
	pos   int
}

// newWalker lists the buckets with matching requests in [lo, hi): hours
// above the summed days, whole summed days, and hours below them.
func newWalker(ctx context.Context, tx *sqlx.Tx, f LogFilter, lo, hi int64) (*walker, error) {
	w := &walker{tx: tx, lo: lo, count: "requests"}
	switch f.KeyID {
	case "":
	case AdminKey:
		w.dims.add("key_id = ''")
	default:
		w.dims.add("key_id = ?", f.KeyID)
	}
	if f.Model != "" {
		w.dims.add("model = ?", f.Model)
	}
	if f.Provider != "" {
		w.dims.add("provider = ?", f.Provider)
	}
	class := f.Status / 100
	if c, ok := statusClass(f.StatusClass); ok && f.Status == 0 {
		class = c / 100
	}
	switch {
	case class == 5:
		w.count = "server_errors"
	case class == 4:
		w.count = "errors - server_errors"
	case class > 0:
		w.count = "requests - errors"
	}

	var until sql.NullInt64
	if err := tx.GetContext(ctx, &until, `SELECT days_until FROM usage_rollup_state WHERE id = 1`); err != nil {
		return nil, err
	}
	daysUntil := int64(openStart)
	if until.Valid {
		daysUntil = until.Int64
	}
	dTop := min(store.FloorBucket(hi, store.PeriodDay), daysUntil)
	dBot := ceilBucket(lo, store.PeriodDay)
	hourLo := store.FloorBucket(lo, store.PeriodHour)
	parts := [][3]int64{{store.PeriodHour, hourLo, hi}}
	if dBot < dTop {
		parts = [][3]int64{
			{store.PeriodHour, dTop, hi},
			{store.PeriodDay, dBot, dTop},
			{store.PeriodHour, hourLo, dBot},
		}
	}
	for _, p := range parts {
		if p[1] >= p[2] {
			continue
		}
		items, err := w.buckets(ctx, p[0], p[1], p[2])
		if err != nil {
			return nil, err
		}
		w.items = append(w.items, items...)
	}
	return w, nil
}

// buckets returns the buckets of period starting in [lo, hi) that count
// matching requests, newest first.
func (w *walker) buckets(ctx context.Context, period, lo, hi int64) ([]walkItem, error) {
	query, args := w.bucketsSQL(period, lo, hi)
	rows, err := w.tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []walkItem
	for rows.Next() {
		it := walkItem{period: period}
		if err := rows.Scan(&it.bucket, &it.count); err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, rows.Err()
}

// bucketsSQL returns the statement of buckets, with its arguments.
func (w *walker) bucketsSQL(period, lo, hi int64) (string, []any) {
	query := `SELECT bucket, sum(` + w.count + `) AS n FROM usage_rollups
		WHERE period = ? AND bucket >= ? AND bucket < ?`
	for _, c := range w.dims.conds {
		query += " AND " + c
	}
	return query + ` GROUP BY bucket HAVING sum(` + w.count + `) > 0 ORDER BY bucket DESC`, append([]any{period, lo, hi}, w.dims.args...)
}

// next returns the start of the next window down: the start of the
// newest buckets not handed out yet that together count at least need
// matches (or all that are left), and their count. found is false when no
// bucket is left; more is false when this window takes the last ones. A
// day whose count would reach need is opened into its hours first, so
// that a window ends on an hour.
func (w *walker) next(ctx context.Context, need int64) (start, sum int64, found, more bool, err error) {
	for w.pos < len(w.items) {
		it := w.items[w.pos]
		if it.period == store.PeriodDay && sum+it.count >= need {
			hours, err := w.buckets(ctx, store.PeriodHour, it.bucket, it.bucket+store.PeriodDay)
			if err != nil {
				return 0, 0, false, false, err
			}
			if len(hours) > 0 {
				w.items = slices.Replace(w.items, w.pos, w.pos+1, hours...)
				continue
			}
		}
		w.pos++
		sum += it.count
		start, found = it.bucket, true
		if sum >= need {
			break
		}
	}
	return max(start, w.lo), sum, found, w.pos < len(w.items), nil
}
