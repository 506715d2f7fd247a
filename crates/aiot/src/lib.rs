//! Edge AI on a node (issue 16): the model versions the control plane assigns to this
//! node's slots are fetched, verified, loaded, self-tested, put on probation and then
//! committed or rolled back, with every switch written so that a `kill -9` leaves the
//! slot on a whole version; `POST /v1/infer/{slot}` runs the slot's serving version.
//! Road inspection (issue 17): `POST /v1/patrol/frames` runs a patrol camera's frames
//! through its slot and keeps them in a durable outbox the node forwards to the control
//! plane; positions and status of patrol cameras come over MQTT (`mqtt`).

pub mod backend;
pub mod decode;
pub mod disk;
pub mod fetch;
pub mod loaded;
pub mod metrics;
pub mod mqtt;
pub mod node;
pub mod patrol;
pub mod preprocess;
pub mod probation;
pub mod runtime;
pub mod server;
pub mod tract_backend;
