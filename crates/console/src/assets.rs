//! The files pages load, compiled into the binary: the console's stylesheet and script,
//! and htmx and uPlot as vendored from their npm packages (versions in the paths, so
//! they are cached for good).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// (path under `/assets/`, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console.js"),
    ),
    (
        "htmx-2.0.11/htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/htmx-2.0.11/htmx.min.js"),
    ),
    (
        "htmx-2.0.11/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/vendor/htmx-2.0.11/LICENSE"),
    ),
    (
        "uplot-1.6.32/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/uplot-1.6.32/uPlot.iife.min.js"),
    ),
    (
        "uplot-1.6.32/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/uplot-1.6.32/uPlot.min.css"),
    ),
    (
        "uplot-1.6.32/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/vendor/uplot-1.6.32/LICENSE"),
    ),
];

/// `GET /assets/{*path}`.
pub async fn serve(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // The console's own files change with the binary: revalidated hourly.
                // The vendored ones have their version in the path.
                (
                    header::CACHE_CONTROL,
                    if path.contains('/') {
                        "public, max-age=31536000, immutable"
                    } else {
                        "public, max-age=3600"
                    },
                ),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}
