//! Arbitrary bytes as a DNS request, over UDP and TCP, from an IPv4 and an IPv6 source:
//! `respond` must not panic, and any response must parse, be a response, echo the
//! request's id, and fit the UDP payload limit over UDP.

#![no_main]

mod common;

use std::net::IpAddr;
use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use lingjing_dns::Gslb;
use lingjing_dns::wire::{MAX_UDP_PAYLOAD, Transport, respond};

static GSLB: OnceLock<Gslb> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let gslb = GSLB.get_or_init(common::gslb);
    let sources: [IpAddr; 2] = [
        IpAddr::from([198, 51, 100, 7]),
        IpAddr::from([0x2001, 0xdb8, 1, 0, 0, 0, 0, 1]),
    ];
    for src in sources {
        for transport in [Transport::Udp, Transport::Tcp] {
            let Some(r) = respond(gslb, data, src, transport) else {
                continue;
            };
            let m = Message::from_vec(&r).expect("our responses parse");
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert_eq!(&r[..2], &data[..2], "the id is echoed");
            if transport == Transport::Udp {
                assert!(r.len() <= usize::from(MAX_UDP_PAYLOAD));
            }
        }
    }
});
