// Package dashboard holds LLM Proxy's web console: static files, embedded
// into the binary and served by the host at "/".
//
// The page is plain HTML, CSS and JavaScript modules that the browser
// loads as they are: there is no build step and no Node.js. The one
// third-party file set, the uPlot chart library, is vendored unmodified
// under vendor/ with its licence (RATIONALE.md says why).
//
// # Layout
//
//	index.html      the only page; every route of the console renders into it
//	favicon.svg     the tab icon
//	app/main.js     start-up: session, navigation, router, live connection
//	app/*.js        shared modules (API calls, formatting, DOM and chart helpers)
//	app/pages/*.js  one module per page
//	app/style.css   the look, light and dark
//	vendor/         third-party files, each in a folder named with its version
package dashboard

import (
	"embed"
	"io/fs"
)

//go:embed index.html favicon.svg app vendor
var files embed.FS

// Files is the console's file tree, rooted at the folder of index.html.
func Files() fs.FS { return files }
