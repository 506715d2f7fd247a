//! The demo static site `lingjing up` puts in the demo bucket (unless its `index.html` is
//! there already) and serves from it through the edges: the service `site`, hostname
//! [`SITE_HOSTNAME`], whose origin is `bucket:demo`.

/// The hostname of the demo service served from the demo bucket.
pub const SITE_HOSTNAME: &str = "site.demo.example";

/// The site's files: (key, content type, bytes).
pub const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../site/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../site/style.css"),
    ),
];
