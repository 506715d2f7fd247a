//! The demo pieces that `lingjing up` starts: the built-in demo origin server (module
//! [`origin`]), a small real HTTP site that the demo CDN service `www.demo.example` pulls
//! from and that the edge tests use as an origin; and the demo topology (module
//! [`topology`]): Jiangsu sites on three carrier lines, a regional parent, a tenant and its
//! service, and a second service served from the demo bucket, whose pages are in module
//! [`site`].

pub mod origin;
pub mod site;
pub mod topology;

pub use origin::{
    DEFAULT_LARGE_SIZE, DEFAULT_LISTEN, ORIGIN_NAME, OriginConfig, OriginHandle, fill_large,
    large_byte, serve,
};
pub use topology::{DemoTopology, demo_topology};
