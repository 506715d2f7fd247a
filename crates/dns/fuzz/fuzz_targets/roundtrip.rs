//! Arbitrary bytes that hickory-proto parses as a query message: re-encoded, the query
//! must be answered (never dropped), and the answer's question must be the query's.

#![no_main]

mod common;

use std::net::IpAddr;
use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType, OpCode};
use libfuzzer_sys::fuzz_target;
use lingjing_dns::Gslb;
use lingjing_dns::wire::{Transport, respond};

static GSLB: OnceLock<Gslb> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let gslb = GSLB.get_or_init(common::gslb);
    let Ok(mut query) = Message::from_vec(data) else {
        return;
    };
    query.metadata.message_type = MessageType::Query;
    query.metadata.op_code = OpCode::Query;
    let Ok(bytes) = query.to_vec() else {
        return;
    };
    // Re-encoded messages hickory cannot read back are not DNS queries anyone sends.
    let Ok(reparsed) = Message::from_vec(&bytes) else {
        return;
    };
    let r = respond(
        gslb,
        &bytes,
        IpAddr::from([198, 51, 100, 7]),
        Transport::Tcp,
    )
    .expect("a query is always answered");
    let m = Message::from_vec(&r).expect("our responses parse");
    assert_eq!(m.metadata.id, reparsed.metadata.id);
    if m.metadata.response_code == hickory_proto::op::ResponseCode::NoError {
        assert_eq!(m.queries, reparsed.queries);
    }
});
