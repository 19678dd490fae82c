//! Struct member offsets from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE relocations, so the agent reads the handful of
//! offsets guard needs from `/sys/kernel/btf/vmlinux` and hands them to the
//! program as frozen `.rodata` (see `guard_common::KernelLayout`). This is a
//! deliberately small reader: types, names and struct/union members, with
//! anonymous members searched through (as `file.f_path` may sit in one).

use std::{collections::HashMap, path::Path};

use anyhow::{bail, Context, Result};
use guard_common::{KernelLayout, LAYOUT_MAGIC};

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC: u32 = 12;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name_off: u32,
    kind: u32,
    /// For typedef/const/volatile/...: the referenced type.
    ref_type: u32,
    members: Vec<Member>,
    /// Number of members / parameters / enumerators.
    vlen: usize,
    /// For an enum: (name offset, value) of each enumerator.
    enumerators: Vec<(u32, i64)>,
}

/// A parsed BTF blob: enough to find struct member offsets.
pub struct Btf {
    strings: Vec<u8>,
    /// Index 0 is the implicit `void`.
    types: Vec<Type>,
    structs_by_name: HashMap<String, u32>,
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&data).with_context(|| format!("parsing BTF in {}", path.display()))
    }

    pub fn parse(data: &[u8]) -> Result<Self> {
        let u16_at = |o: usize| -> Result<u16> {
            Ok(u16::from_le_bytes(data.get(o..o + 2).context("truncated BTF")?.try_into()?))
        };
        let u32_at = |o: usize| -> Result<u32> {
            Ok(u32::from_le_bytes(data.get(o..o + 4).context("truncated BTF")?.try_into()?))
        };
        if u16_at(0)? != BTF_MAGIC {
            bail!("not a little-endian BTF blob (bad magic)");
        }
        let hdr_len = u32_at(4)? as usize;
        let type_off = u32_at(8)? as usize;
        let type_len = u32_at(12)? as usize;
        let str_off = u32_at(16)? as usize;
        let str_len = u32_at(20)? as usize;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .context("string section out of bounds")?
            .to_vec();

        let mut types = vec![Type { name_off: 0, kind: 0, ref_type: 0, members: vec![], vlen: 0, enumerators: vec![] }];
        let mut pos = hdr_len + type_off;
        let end = pos + type_len;
        while pos < end {
            let name_off = u32_at(pos)?;
            let info = u32_at(pos + 4)?;
            let size_or_type = u32_at(pos + 8)?;
            pos += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let mut enumerators = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => pos += 4,
                KIND_ARRAY => pos += 12,
                KIND_STRUCT | KIND_UNION => {
                    for _ in 0..vlen {
                        let m_name = u32_at(pos)?;
                        let m_type = u32_at(pos + 4)?;
                        let m_off = u32_at(pos + 8)?;
                        let bit_offset = if kind_flag { m_off & 0x00ff_ffff } else { m_off };
                        members.push(Member { name_off: m_name, type_id: m_type, bit_offset });
                        pos += 12;
                    }
                }
                KIND_ENUM => {
                    for _ in 0..vlen {
                        enumerators.push((u32_at(pos)?, i64::from(u32_at(pos + 4)? as i32)));
                        pos += 8;
                    }
                }
                KIND_ENUM64 => {
                    for _ in 0..vlen {
                        let v = u64::from(u32_at(pos + 4)?) | u64::from(u32_at(pos + 8)?) << 32;
                        enumerators.push((u32_at(pos)?, v as i64));
                        pos += 12;
                    }
                }
                KIND_FUNC_PROTO => pos += 8 * vlen,
                KIND_DATASEC => pos += 12 * vlen,
                _ => {}
            }
            types.push(Type { name_off, kind, ref_type: size_or_type, members, vlen, enumerators });
        }

        let mut btf = Btf { strings, types, structs_by_name: HashMap::new() };
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name_off != 0 {
                let name = btf.name(t.name_off).to_string();
                // Keep the first complete definition of a name.
                btf.structs_by_name.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let s = &self.strings[(off as usize).min(self.strings.len())..];
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize).map(|t| t.kind) {
                Some(KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG) => {
                    id = self.types[id as usize].ref_type;
                }
                _ => break,
            }
        }
        id
    }

    /// The number of parameters of the kernel function `name` (a `FUNC`
    /// whose type is a `FUNC_PROTO`), or `None` if BTF has no such function.
    pub fn func_params(&self, name: &str) -> Option<usize> {
        let f = self.types.iter().find(|t| t.kind == KIND_FUNC && self.name(t.name_off) == name)?;
        let proto = self.types.get(f.ref_type as usize)?;
        (proto.kind == KIND_FUNC_PROTO).then_some(proto.vlen)
    }

    /// The enumerators of `enum name`, by name (empty if BTF has no such enum).
    pub fn enum_values(&self, name: &str) -> std::collections::BTreeMap<String, i64> {
        self.types
            .iter()
            .find(|t| matches!(t.kind, KIND_ENUM | KIND_ENUM64) && self.name(t.name_off) == name)
            .map(|t| t.enumerators.iter().map(|&(n, v)| (self.name(n).to_string(), v)).collect())
            .unwrap_or_default()
    }

    /// Byte offset of `member` in `struct name`, searching anonymous
    /// struct/union members. Errors if the member is a bitfield.
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32> {
        let id = *self
            .structs_by_name
            .get(name)
            .with_context(|| format!("struct {name} not found in kernel BTF"))?;
        let bits = self
            .find_member(id, member, 0)
            .with_context(|| format!("struct {name} has no member {member} in kernel BTF"))?;
        if bits % 8 != 0 {
            bail!("{name}.{member} is a bitfield; guard cannot read it");
        }
        Ok(bits / 8)
    }

    fn find_member(&self, id: u32, member: &str, base_bits: u32) -> Option<u32> {
        let t = self.types.get(id as usize)?;
        for m in &t.members {
            let bits = base_bits + m.bit_offset;
            if m.name_off != 0 {
                if self.name(m.name_off) == member {
                    return Some(bits);
                }
            } else {
                let inner = self.resolve(m.type_id);
                let kind = self.types.get(inner as usize).map(|t| t.kind);
                if matches!(kind, Some(KIND_STRUCT | KIND_UNION)) {
                    if let Some(found) = self.find_member(inner, member, bits) {
                        return Some(found);
                    }
                }
            }
        }
        None
    }
}

/// Fills a `KernelLayout` from the kernel's BTF. Every field is required:
/// a kernel whose structs lack one of them is not supported, and we say which.
pub fn kernel_layout(btf: &Btf) -> Result<KernelLayout> {
    let f = |s: &str, m: &str| btf.member_offset(s, m);
    Ok(KernelLayout {
        file_f_inode: f("file", "f_inode")?,
        file_f_path: f("file", "f_path")?,
        file_f_mode: f("file", "f_mode")?,
        inode_i_ino: f("inode", "i_ino")?,
        inode_i_mode: f("inode", "i_mode")?,
        inode_i_sb: f("inode", "i_sb")?,
        super_block_s_dev: f("super_block", "s_dev")?,
        dentry_d_parent: f("dentry", "d_parent")?,
        dentry_d_inode: f("dentry", "d_inode")?,
        path_dentry: f("path", "dentry")?,
        task_cred: f("task_struct", "cred")?,
        task_mm: f("task_struct", "mm")?,
        task_cgroups: f("task_struct", "cgroups")?,
        task_tgid: f("task_struct", "tgid")?,
        cred_uid: f("cred", "uid")?,
        cred_gid: f("cred", "gid")?,
        cred_euid: f("cred", "euid")?,
        mm_exe_file: f("mm_struct", "exe_file")?,
        css_set_dfl_cgrp: f("css_set", "dfl_cgrp")?,
        cgroup_kn: f("cgroup", "kn")?,
        kernfs_node_id: f("kernfs_node", "id")?,
        inode_i_generation: f("inode", "i_generation")?,
        inode_i_nlink: f("inode", "i_nlink")?,
        super_block_s_magic: f("super_block", "s_magic")?,
        path_mnt: f("path", "mnt")?,
        mount_mnt: f("mount", "mnt")?,
        mount_mnt_parent: f("mount", "mnt_parent")?,
        bpf_map_id: f("bpf_map", "id")?,
        bpf_prog_aux: f("bpf_prog", "aux")?,
        bpf_prog_aux_id: f("bpf_prog_aux", "id")?,
        inode_i_private: f("inode", "i_private")?,
        // Renamed `__parent` (same pointer, RCU-annotated) in later kernels.
        kernfs_node_parent: f("kernfs_node", "parent").or_else(|_| f("kernfs_node", "__parent"))?,
        kernfs_node_name: f("kernfs_node", "name")?,
        dentry_d_name: f("dentry", "d_name")?,
        qstr_name: f("qstr", "name")?,
        task_ptrace: f("task_struct", "ptrace")?,
        linux_binprm_file: f("linux_binprm", "file")?,
        task_group_leader: f("task_struct", "group_leader")?,
        task_start_boottime: f("task_struct", "start_boottime")?,
        vfsmount_mnt_sb: f("vfsmount", "mnt_sb")?,
        task_real_parent: f("task_struct", "real_parent")?,
        proc_inode_vfs_inode: f("proc_inode", "vfs_inode")?,
        proc_inode_pid: f("proc_inode", "pid")?,
        pid_tasks: f("pid", "tasks")?,
        task_pid_links: f("task_struct", "pid_links")?,
        task_flags: f("task_struct", "flags")?,
        perf_event_attr: f("perf_event", "attr")?,
        perf_event_hw: f("perf_event", "hw")?,
        hw_perf_event_target: f("hw_perf_event", "target")?,
        inode_i_rdev: f("inode", "i_rdev")?,
        inode_i_flags: f("inode", "i_flags")?,
        kernfs_node_flags: f("kernfs_node", "flags")?,
        // `dir` is a member of an anonymous union in `kernfs_node`.
        kernfs_node_dir_root: f("kernfs_node", "dir")? + f("kernfs_elem_dir", "root")?,
        magic: LAYOUT_MAGIC,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's own BTF, when it has one: every offset guard needs must be found.
    #[test]
    fn host_kernel_layout_resolves() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("SKIPPED: {} not present on this host", path.display());
            return;
        }
        let btf = Btf::from_file(path).expect("host BTF parses");
        let layout = kernel_layout(&btf).expect("all members found");
        // `struct path` is { vfsmount *mnt; dentry *dentry } on every kernel.
        assert_eq!(layout.path_dentry, 8);
        assert_ne!(layout.file_f_inode, layout.file_f_path);
        assert!(layout.task_cred > 0 && layout.task_mm > 0);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(&[0u8; 4]).is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0]).is_err());
    }

    /// A hand-built blob: struct outer { int a; union { int b; int c; }; }.
    #[test]
    fn finds_members_in_anonymous_unions() {
        let mut strings = b"\0int\0outer\0a\0b\0c\0".to_vec();
        let name = |s: &str| -> u32 {
            let needle = format!("\0{s}\0");
            strings_pos(&needle)
        };
        fn strings_pos(needle: &str) -> u32 {
            let hay = b"\0int\0outer\0a\0b\0c\0";
            hay.windows(needle.len()).position(|w| w == needle.as_bytes()).unwrap() as u32 + 1
        }
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        // 1: int (4 bytes)
        push(&[name("int"), KIND_INT << 24, 4, 32]);
        // 2: anonymous union { b @0, c @0 }
        push(&[0, (KIND_UNION << 24) | 2, 4, name("b"), 1, 0, name("c"), 1, 0]);
        // 3: struct outer { a @0, <anon> @32 bits }
        push(&[name("outer"), (KIND_STRUCT << 24) | 2, 8, name("a"), 1, 0, 0, 2, 32]);
        let mut blob = Vec::new();
        blob.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        blob.extend_from_slice(&[1, 0]);
        blob.extend_from_slice(&24u32.to_le_bytes());
        blob.extend_from_slice(&0u32.to_le_bytes());
        blob.extend_from_slice(&(types.len() as u32).to_le_bytes());
        blob.extend_from_slice(&(types.len() as u32).to_le_bytes());
        blob.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        blob.extend_from_slice(&types);
        blob.append(&mut strings);
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.member_offset("outer", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "c").unwrap(), 4);
        let err = btf.member_offset("outer", "zz").unwrap_err().to_string();
        assert!(err.contains("no member zz"), "{err}");
        assert!(btf.member_offset("nope", "a").is_err());
    }
}
