//! The floor: one program per hook guard attaches that does nothing and
//! returns 0. `guard bench host` attaches these side by side with guard's
//! own programs to separate what any BPF LSM program on a hook costs (the
//! trampoline, a call on kernels without static LSM calls) from what
//! guard's code adds. Never attached by the agent.

use aya_ebpf::{macros::lsm, programs::LsmContext};

/// `$hook` is a `tt` so the attribute sees a plain string literal.
macro_rules! floor_programs {
    ($($name:ident => $hook:tt),* $(,)?) => {$(
        #[lsm(hook = $hook)]
        pub fn $name(_ctx: LsmContext) -> i32 {
            0
        }
    )*};
}

// Names: `guard_common::FLOOR_PROGRAMS` (checked by a host test).
floor_programs! {
    guard_floor_bpf => "bpf",
    guard_floor_bprm_check_security => "bprm_check_security",
    guard_floor_task_fix_setuid => "task_fix_setuid",
    guard_floor_bpf_map => "bpf_map",
    guard_floor_bpf_prog => "bpf_prog",
    guard_floor_sb_umount => "sb_umount",
    guard_floor_task_alloc => "task_alloc",
    guard_floor_kernfs_init_security => "kernfs_init_security",
    guard_floor_sb_free_security => "sb_free_security",
    guard_floor_sb_alloc_security => "sb_alloc_security",
    guard_floor_move_mount => "move_mount",
    guard_floor_locked_down => "locked_down",
    guard_floor_kernel_read_file => "kernel_read_file",
    guard_floor_cred_prepare => "cred_prepare",
    guard_floor_task_kill => "task_kill",
    guard_floor_file_send_sigiotask => "file_send_sigiotask",
    guard_floor_task_setrlimit => "task_setrlimit",
    guard_floor_perf_event_alloc => "perf_event_alloc",
    guard_floor_inode_free_security => "inode_free_security",
    guard_floor_d_instantiate => "d_instantiate",
    guard_floor_inode_rename => "inode_rename",
    guard_floor_inode_unlink => "inode_unlink",
    guard_floor_path_truncate => "path_truncate",
    guard_floor_ptrace_access_check => "ptrace_access_check",
    guard_floor_file_receive => "file_receive",
    guard_floor_file_open => "file_open",
    guard_floor_file_ioctl => "file_ioctl",
    guard_floor_inode_follow_link => "inode_follow_link",
    guard_floor_file_ioctl_compat => "file_ioctl_compat",
}
