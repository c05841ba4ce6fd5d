//! The packet socket's batched send (`RawSocket::send_many`, one sendmmsg
//! per burst), against the kernel, on the loopback interface: frames go in
//! order, each header followed by its data, across more than one system
//! call's worth; a frame the kernel refuses in the middle stops the call
//! there, with its error, and nothing after it is sent.

use aoefs::link::raw::{RawOptions, RawSocket, Receive};
use aoefs::wire::ETHERTYPE_AOE;
use std::time::{Duration, Instant};

/// Marks this test's frames among anything else on lo.
const MAGIC: &[u8; 8] = b"sendmany";

fn head(seq: u32) -> Vec<u8> {
    let mut h = vec![0u8; 12]; // lo's MAC is all zeros: to it, from it
    h.extend_from_slice(&ETHERTYPE_AOE.to_be_bytes());
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&seq.to_be_bytes());
    h
}

fn data(seq: u32) -> Vec<u8> {
    (0..100 + seq as usize).map(|i| (i as u32 ^ seq) as u8).collect()
}

#[test]
fn send_many_sends_bursts_in_order_and_stops_at_a_frame_the_kernel_refuses() {
    let rx = RawSocket::open("lo", RawOptions { receive: Receive::Aoe, rcvbuf: 4 << 20, ..Default::default() })
        .expect("packet socket on lo (needs root)");
    let tx = RawSocket::open("lo", RawOptions::default()).expect("send socket on lo");
    // 40 frames, more than one sendmmsg's 32; 10 and 35 longer than lo's
    // MTU (65536), so the kernel refuses them (EMSGSIZE).
    let too_long = vec![0u8; 70_000];
    let heads: Vec<Vec<u8>> = (0..40).map(head).collect();
    let datas: Vec<Vec<u8>> = (0..40).map(|s| if s == 10 || s == 35 { too_long.clone() } else { data(s) }).collect();
    let frames: Vec<(&[u8], &[u8])> = heads.iter().zip(&datas).map(|(h, d)| (&h[..], &d[..])).collect();

    let (n, e) = tx.send_many(&frames);
    assert_eq!((n, e.and_then(|e| e.raw_os_error())), (10, Some(libc::EMSGSIZE)), "stops at the first refused");
    let (n, e) = tx.send_many(&frames[11..]);
    assert_eq!((n, e.and_then(|e| e.raw_os_error())), (24, Some(libc::EMSGSIZE)), "past 32, in the second call");
    let (n, e) = tx.send_many(&frames[36..]);
    assert_eq!((n, e.map(|e| e.to_string())), (4, None));
    let (n, e) = tx.send_many(&[(&[0u8; 5][..], &[][..])]);
    assert_eq!((n, e.map(|e| e.kind())), (0, Some(std::io::ErrorKind::InvalidInput)), "shorter than a MAC");

    // What came back on lo, in order: every frame but the refused ones.
    let want: Vec<u32> = (0..40).filter(|s| *s != 10 && *s != 35).collect();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 80_000];
    let t0 = Instant::now();
    while got.len() < want.len() && t0.elapsed() < Duration::from_secs(5) {
        let Some((len, kind)) = rx.recv(&mut buf, 100).expect("recv") else { continue };
        let f = &buf[..len];
        // lo shows each frame twice: going out, and coming in (PACKET_HOST).
        if kind != libc::PACKET_HOST || len < 26 || &f[14..22] != MAGIC {
            continue;
        }
        let seq = u32::from_be_bytes(f[22..26].try_into().unwrap());
        assert_eq!(&f[26..], &data(seq)[..], "frame {seq}: its data follows its header");
        got.push(seq);
    }
    assert_eq!(got, want);
}
