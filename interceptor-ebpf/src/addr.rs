//! Addresses in and out of the program contexts.
//!
//! Context fields are read and written with 4-byte volatile accesses: the
//! verifier only allows particular access sizes on `bpf_sock_addr` and
//! `bpf_sock_ops`, and a plain struct copy could be lowered to other sizes.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::bindings::{bpf_sock_addr, bpf_sock_ops};

/// `::ffff:0:0/96` as the third 32-bit word of an IPv6 address (network order).
const MAPPED_WORD: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// IPv4 address (as read from `user_ip4`: network order in memory) as a
/// v4-mapped IPv6 address.
#[inline(always)]
pub(crate) fn mapped4(ip4: u32) -> [u8; 16] {
    let b = ip4.to_ne_bytes();
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, b[0], b[1], b[2], b[3],
    ]
}

/// Four network-order words as 16 bytes.
#[inline(always)]
pub(crate) fn words_to_bytes(w: [u32; 4]) -> [u8; 16] {
    let (a, b, c, d) = (
        w[0].to_ne_bytes(),
        w[1].to_ne_bytes(),
        w[2].to_ne_bytes(),
        w[3].to_ne_bytes(),
    );
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2],
        d[3],
    ]
}

/// 16 bytes as four network-order words.
#[inline(always)]
pub(crate) fn bytes_to_words(b: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

/// Whether `w` is an IPv4-mapped address (`::ffff:a.b.c.d`).
#[inline(always)]
pub(crate) fn is_mapped(w: &[u32; 4]) -> bool {
    w[0] == 0 && w[1] == 0 && w[2] == MAPPED_WORD
}

// The accessors below take the raw context pointer the program was called
// with; the kernel guarantees it is valid for the duration of the program.

/// `user_ip4` (network order in memory).
#[inline(always)]
pub(crate) fn user_ip4(sa: *mut bpf_sock_addr) -> u32 {
    unsafe { read_volatile(addr_of!((*sa).user_ip4)) }
}

/// `user_ip6` as network-order words.
#[inline(always)]
pub(crate) fn user_ip6(sa: *mut bpf_sock_addr) -> [u32; 4] {
    unsafe {
        [
            read_volatile(addr_of!((*sa).user_ip6[0])),
            read_volatile(addr_of!((*sa).user_ip6[1])),
            read_volatile(addr_of!((*sa).user_ip6[2])),
            read_volatile(addr_of!((*sa).user_ip6[3])),
        ]
    }
}

/// `user_port`, host byte order.
#[inline(always)]
pub(crate) fn user_port(sa: *mut bpf_sock_addr) -> u16 {
    // The port sits in the low 16 bits in network byte order.
    u16::from_be(unsafe { read_volatile(addr_of!((*sa).user_port)) } as u16)
}

/// Sets `user_ip4` from network-order bytes and `user_port` from a host-order port.
#[inline(always)]
pub(crate) fn set_user4(sa: *mut bpf_sock_addr, ip: [u8; 4], port: u16) {
    unsafe {
        write_volatile(addr_of_mut!((*sa).user_ip4), u32::from_ne_bytes(ip));
        write_volatile(addr_of_mut!((*sa).user_port), u32::from(port.to_be()));
    }
}

/// Sets `user_ip6` from 16 network-order bytes and `user_port`.
#[inline(always)]
pub(crate) fn set_user6(sa: *mut bpf_sock_addr, ip: &[u8; 16], port: u16) {
    let w = bytes_to_words(ip);
    unsafe {
        write_volatile(addr_of_mut!((*sa).user_ip6[0]), w[0]);
        write_volatile(addr_of_mut!((*sa).user_ip6[1]), w[1]);
        write_volatile(addr_of_mut!((*sa).user_ip6[2]), w[2]);
        write_volatile(addr_of_mut!((*sa).user_ip6[3]), w[3]);
        write_volatile(addr_of_mut!((*sa).user_port), u32::from(port.to_be()));
    }
}

/// `type` of the socket (`SOCK_STREAM`, ...).
#[inline(always)]
pub(crate) fn sock_type(sa: *mut bpf_sock_addr) -> u32 {
    unsafe { read_volatile(addr_of!((*sa).type_)) }
}

/// The local address of a sock_ops socket as (16-byte v4-mapped/v6, host-order port).
#[inline(always)]
pub(crate) fn ops_local(ops: *mut bpf_sock_ops) -> ([u8; 16], u16) {
    // All fields are read unconditionally, each at a constant offset from the
    // context pointer: the verifier rejects loads through a context pointer
    // the compiler adjusted (e.g. one address picked per branch).
    let (family, ip4, ip6, port) = unsafe {
        (
            read_volatile(addr_of!((*ops).family)),
            read_volatile(addr_of!((*ops).local_ip4)),
            [
                read_volatile(addr_of!((*ops).local_ip6[0])),
                read_volatile(addr_of!((*ops).local_ip6[1])),
                read_volatile(addr_of!((*ops).local_ip6[2])),
                read_volatile(addr_of!((*ops).local_ip6[3])),
            ],
            // local_port is in host byte order (uapi bpf.h).
            read_volatile(addr_of!((*ops).local_port)),
        )
    };
    let addr = if family == u32::from(interceptor_common::AF_INET) {
        mapped4(ip4)
    } else {
        words_to_bytes(ip6)
    };
    (addr, port as u16)
}
