//! The layers applied to the command itself, inside the sandbox, just before it runs:
//! resource limits, `NO_NEW_PRIVS`, Landlock (filesystem writes, TCP connects, signals and
//! abstract sockets scoped to the sandbox) and a seccomp filter.
//!
//! Everything that allocates is prepared before the fork (`Prepared`); `Prepared::apply`
//! runs in the child between fork and exec and only makes system calls.

#![allow(unsafe_code)] // setrlimit/prctl between fork and exec; each call is commented.

use std::collections::BTreeMap;
use std::path::PathBuf;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, Scope, path_beneath_rules,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

/// What the init process is told to apply (it crosses into the sandbox as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Layers {
    /// Writable places (the worktree, the sandbox's own /tmp).
    pub writable: Vec<PathBuf>,
    /// The only TCP port the command may connect to (the proxy's bridge); none: no TCP.
    pub proxy_port: Option<u16>,
    pub rlimits: Vec<(Rlimit, u64)>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Rlimit {
    Cpu,
    As,
    Nproc,
    Fsize,
    Nofile,
}

impl Rlimit {
    fn resource(self) -> libc::__rlimit_resource_t {
        match self {
            Self::Cpu => libc::RLIMIT_CPU,
            Self::As => libc::RLIMIT_AS,
            Self::Nproc => libc::RLIMIT_NPROC,
            Self::Fsize => libc::RLIMIT_FSIZE,
            Self::Nofile => libc::RLIMIT_NOFILE,
        }
    }
}

/// The layers, ready to apply in a child.
pub struct Prepared {
    rlimits: Vec<(Rlimit, u64)>,
    ruleset: Option<RulesetCreated>,
    filter: BpfProgram,
    clone3: BpfProgram,
}

/// The Landlock ABI we ask for (best effort: an older kernel gets what it has).
const LANDLOCK_ABI: ABI = ABI::V6;

/// System calls refused to the command (`EPERM`): debugging and reading other processes,
/// kernel attack surface a build never needs, and leaving the sandbox's namespaces.
const DENIED_SYSCALLS: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_bpf,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_perf_event_open,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_fsconfig,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_kexec_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_userfaultfd,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_fanotify_init,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
];

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("cannot build the seccomp filter: {0}")]
    Seccomp(String),
    #[error("cannot build the Landlock ruleset: {0}")]
    Landlock(String),
}

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// clone3 hides its flags in memory a filter cannot read: it answers ENOSYS (a second
/// filter, since a filter has one errno), and libc falls back to clone, whose flags are
/// checked.
fn clone3_filter() -> Result<BpfProgram, ConfineError> {
    let e = |e: seccompiler::BackendError| ConfineError::Seccomp(e.to_string());
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        ARCH,
    )
    .map_err(e)?;
    filter.try_into().map_err(e)
}

fn seccomp_filter(allow_inet: bool) -> Result<BpfProgram, ConfineError> {
    let e = |e: seccompiler::BackendError| ConfineError::Seccomp(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in DENIED_SYSCALLS {
        rules.insert(nr, Vec::new());
    }
    // Socket families: AF_UNIX always; AF_INET/AF_INET6 only to reach the proxy's bridge
    // (the network namespace has nothing else); everything else (netlink, packet, …) never.
    let mut families = vec![libc::AF_UNIX as u64];
    if allow_inet {
        families.extend([libc::AF_INET as u64, libc::AF_INET6 as u64]);
    }
    let conds = families
        .iter()
        .map(|&f| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        rules.insert(nr, vec![SeccompRule::new(conds.clone()).map_err(e)?]);
    }
    // A clone carrying any namespace flag is refused (one rule per flag: rules are or-ed).
    let ns_rule = (0..7)
        .map(|bit| {
            let flag = [
                libc::CLONE_NEWUSER,
                libc::CLONE_NEWNS,
                libc::CLONE_NEWNET,
                libc::CLONE_NEWPID,
                libc::CLONE_NEWIPC,
                libc::CLONE_NEWUTS,
                libc::CLONE_NEWCGROUP,
            ][bit] as u64;
            SeccompRule::new(vec![
                SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(flag),
                    flag,
                )
                .map_err(e)?,
            ])
            .map_err(e)
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, ns_rule);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH,
    )
    .map_err(e)?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| ConfineError::Seccomp(e.to_string()))
}

/// The Landlock ruleset: read and execute everywhere the mount namespace shows, write only
/// below `writable`; TCP connects only to the proxy's port; no signals or abstract Unix
/// sockets beyond the sandbox's own processes. `None` when the kernel has no Landlock.
fn landlock_ruleset(layers: &Layers) -> Result<Option<RulesetCreated>, ConfineError> {
    let e = |e: landlock::RulesetError| ConfineError::Landlock(e.to_string());
    let abi = LANDLOCK_ABI;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(e)?
        .handle_access(AccessNet::ConnectTcp)
        .map_err(e)?
        .scope(Scope::AbstractUnixSocket)
        .map_err(e)?
        .scope(Scope::Signal)
        .map_err(e)?
        .create()
        .map_err(e)?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))
        .map_err(e)?
        .add_rules(path_beneath_rules(
            &layers.writable,
            AccessFs::from_all(abi),
        ))
        .map_err(e)?;
    if let Some(port) = layers.proxy_port {
        ruleset = ruleset
            .add_rule(NetPort::new(port, AccessNet::ConnectTcp))
            .map_err(e)?;
    }
    Ok(Some(ruleset))
}

impl Prepared {
    pub fn new(layers: &Layers) -> Result<Self, ConfineError> {
        Ok(Self {
            rlimits: layers.rlimits.clone(),
            ruleset: landlock_ruleset(layers)?,
            filter: seccomp_filter(layers.proxy_port.is_some())?,
            clone3: clone3_filter()?,
        })
    }

    /// Applies every layer to the calling process. Runs between fork and exec: system
    /// calls only (the Landlock and seccomp structures were built before the fork).
    pub fn apply(&mut self) -> std::io::Result<()> {
        for &(r, v) in &self.rlimits {
            let lim = libc::rlimit {
                rlim_cur: v,
                rlim_max: v,
            };
            // SAFETY: setrlimit with a valid pointer to a stack value.
            if unsafe { libc::setrlimit(r.resource(), &lim) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes no pointers.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if let Some(ruleset) = self.ruleset.take() {
            ruleset
                .restrict_self()
                .map_err(|e| std::io::Error::other(format!("Landlock: {e}")))?;
        }
        for f in [&self.clone3, &self.filter] {
            seccompiler::apply_filter(f)
                .map_err(|e| std::io::Error::other(format!("seccomp: {e}")))?;
        }
        Ok(())
    }
}

/// What Landlock this kernel enforces: its ABI version, or `None`.
pub fn landlock_abi() -> Option<i32> {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) reads nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    (v > 0).then_some(v as i32)
}

/// Whether this kernel has seccomp filters.
pub fn seccomp_available() -> bool {
    // SAFETY: prctl(PR_GET_SECCOMP) takes no pointers.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_build() {
        super::seccomp_filter(false).expect("test input");
        super::seccomp_filter(true).expect("test input");
        super::clone3_filter().expect("test input");
    }
}
