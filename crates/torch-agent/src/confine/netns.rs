//! A fresh network namespace with loopback up (supervisor side).
//!
//! As root the supervisor unshares the network namespace directly; otherwise
//! it first enters a new user namespace mapping its own uid and gid (which
//! needs a single-threaded process: call this before starting any thread).
//! Loopback is brought up with one rtnetlink message, so no `ip` binary is
//! needed.

use std::fs;

use nix::sched::{CloneFlags, unshare};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    socket,
};
use nix::unistd::{Gid, Uid, getgid, getuid};

const RTM_NEWLINK: u16 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const IFF_UP: u32 = 1;
/// Loopback is the first device of every network namespace.
const LOOPBACK_INDEX: i32 = 1;

/// Moves the calling thread (and what it spawns) into a new network
/// namespace where only loopback exists, and brings it up.
pub(crate) fn enter_private_netns() -> Result<(), String> {
    if getuid().is_root() {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
    } else {
        let (uid, gid) = (getuid(), getgid());
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("unshare(CLONE_NEWUSER|CLONE_NEWNET): {e}"))?;
        map_ids(uid, gid)?;
    }
    loopback_up()
}

/// Maps our own uid/gid into the new user namespace, so files keep their
/// owner and the task runs as the same user.
fn map_ids(uid: Uid, gid: Gid) -> Result<(), String> {
    let w = |file: &str, text: String| {
        fs::write(format!("/proc/self/{file}"), text).map_err(|e| format!("writing {file}: {e}"))
    };
    w("setgroups", "deny".into())?;
    w("uid_map", format!("{uid} {uid} 1\n"))?;
    w("gid_map", format!("{gid} {gid} 1\n"))
}

fn loopback_up() -> Result<(), String> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, 0),
    )
    .map_err(|e| format!("netlink bind: {e}"))?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let msg = newlink_up(LOOPBACK_INDEX);
    send(raw, &msg, MsgFlags::empty()).map_err(|e| format!("netlink send: {e}"))?;
    let mut buf = [0u8; 256];
    let n = recv(raw, &mut buf, MsgFlags::empty()).map_err(|e| format!("netlink recv: {e}"))?;
    match ack_error(&buf[..n]) {
        Some(0) => Ok(()),
        Some(errno) => Err(format!(
            "bringing loopback up: {}",
            nix::errno::Errno::from_raw(-errno)
        )),
        None => Err("bringing loopback up: no acknowledgement".into()),
    }
}

/// An `RTM_NEWLINK` request setting `IFF_UP` on interface `index`.
fn newlink_up(index: i32) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it
    m.push(0); // ifi_family AF_UNSPEC
    m.push(0); // padding
    m.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    m.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    m
}

/// The error code of an `NLMSG_ERROR` reply (0 is the ack).
fn ack_error(reply: &[u8]) -> Option<i32> {
    if reply.len() < 20 {
        return None;
    }
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind != NLMSG_ERROR {
        return None;
    }
    Some(i32::from_ne_bytes([
        reply[16], reply[17], reply[18], reply[19],
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netlink_message_layout() {
        let m = newlink_up(1);
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes([m[0], m[1], m[2], m[3]]), 32);
        assert_eq!(i32::from_ne_bytes([m[20], m[21], m[22], m[23]]), 1);
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(ack_error(&ack), Some(0));
        ack[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(ack_error(&ack), Some(-1));
        assert_eq!(ack_error(&[0; 4]), None);
    }
}
