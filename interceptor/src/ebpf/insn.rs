//! A small eBPF assembler: the instructions `unix.rs` needs, with forward
//! labels. Encoding from the kernel's `Documentation/bpf/standardization/
//! instruction-set.rst`.

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    /// Opcode: class | size/op | mode/source.
    pub(crate) code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high nibble.
    pub(crate) regs: u8,
    /// Signed offset (memory accesses, jumps).
    pub(crate) off: i16,
    /// Immediate.
    pub(crate) imm: i32,
}

/// Register numbers.
pub(crate) mod reg {
    pub(crate) const R0: u8 = 0;
    pub(crate) const R1: u8 = 1;
    pub(crate) const R2: u8 = 2;
    pub(crate) const R3: u8 = 3;
    pub(crate) const R4: u8 = 4;
    pub(crate) const R5: u8 = 5;
    pub(crate) const R6: u8 = 6;
    pub(crate) const R7: u8 = 7;
    pub(crate) const R8: u8 = 8;
    pub(crate) const R9: u8 = 9;
    /// Read-only frame pointer.
    pub(crate) const R10: u8 = 10;
}

// Instruction classes.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
// Sizes and modes.
const MEM: u8 = 0x60;
const IMM: u8 = 0x00;
// Sources.
const K: u8 = 0x00;
const X: u8 = 0x08;
// ALU ops.
const ADD: u8 = 0x00;
const MUL: u8 = 0x20;
const OR: u8 = 0x40;
const AND: u8 = 0x50;
const RSH: u8 = 0x70;
const XOR: u8 = 0xa0;
const MOV: u8 = 0xb0;
// Jump ops.
const JA: u8 = 0x00;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;

/// Access sizes.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub(crate) enum Size {
    /// 4 bytes.
    W = 0x00,
    /// 1 byte.
    B = 0x10,
    /// 8 bytes.
    Dw = 0x18,
}

/// Conditional jumps (64-bit compares).
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub(crate) enum Cond {
    /// `==`.
    Eq = 0x10,
    /// `!=`.
    Ne = 0x50,
    /// unsigned `<`.
    Lt = 0xa0,
}

/// `src_reg` of a `ld_imm64` carrying a map fd.
const PSEUDO_MAP_FD: u8 = 1;
/// `src_reg` of a call to a kernel function by BTF id.
const PSEUDO_KFUNC_CALL: u8 = 2;

/// A jump target, bound later with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Label(usize);

/// Instruction buffer with labels.
#[derive(Default)]
pub(crate) struct Asm {
    insns: Vec<Insn>,
    /// Where each label was bound.
    labels: Vec<Option<usize>>,
    /// (jump instruction index, its target).
    fixups: Vec<(usize, Label)>,
}

/// The builder could not resolve the program.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AsmError {
    #[error("label {0} is used but never bound")]
    Unbound(usize),
    #[error("jump from {from} to {to} does not fit in 16 bits")]
    TooFar { from: usize, to: usize },
}

fn regs(dst: u8, src: u8) -> u8 {
    (src << 4) | (dst & 0x0f)
}

impl Asm {
    fn push(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: regs(dst, src),
            off,
            imm,
        });
    }

    /// A new, unbound label.
    pub(crate) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next instruction.
    pub(crate) fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    /// `dst = imm` (64-bit, sign-extended).
    pub(crate) fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.push(ALU64 | MOV | K, dst, 0, 0, imm);
    }

    /// `dst = src`.
    pub(crate) fn mov_reg(&mut self, dst: u8, src: u8) {
        self.push(ALU64 | MOV | X, dst, src, 0, 0);
    }

    /// `dst += imm`.
    pub(crate) fn add_imm(&mut self, dst: u8, imm: i32) {
        self.push(ALU64 | ADD | K, dst, 0, 0, imm);
    }

    /// `dst &= src`.
    pub(crate) fn and_reg(&mut self, dst: u8, src: u8) {
        self.push(ALU64 | AND | X, dst, src, 0, 0);
    }

    /// `dst |= src`.
    pub(crate) fn or_reg(&mut self, dst: u8, src: u8) {
        self.push(ALU64 | OR | X, dst, src, 0, 0);
    }

    /// `dst *= src`.
    pub(crate) fn mul_reg(&mut self, dst: u8, src: u8) {
        self.push(ALU64 | MUL | X, dst, src, 0, 0);
    }

    /// `dst >>= imm` (logical).
    pub(crate) fn rsh_imm(&mut self, dst: u8, imm: i32) {
        self.push(ALU64 | RSH | K, dst, 0, 0, imm);
    }

    /// `dst ^= imm`.
    pub(crate) fn xor_imm(&mut self, dst: u8, imm: i32) {
        self.push(ALU64 | XOR | K, dst, 0, 0, imm);
    }

    /// `dst = *(size *)(src + off)`.
    pub(crate) fn load(&mut self, size: Size, dst: u8, src: u8, off: i16) {
        self.push(LDX | MEM | size as u8, dst, src, off, 0);
    }

    /// `*(size *)(dst + off) = imm`.
    pub(crate) fn store_imm(&mut self, size: Size, dst: u8, off: i16, imm: i32) {
        self.push(ST | MEM | size as u8, dst, 0, off, imm);
    }

    /// `*(size *)(dst + off) = src`.
    pub(crate) fn store_reg(&mut self, size: Size, dst: u8, src: u8, off: i16) {
        self.push(STX | MEM | size as u8, dst, src, off, 0);
    }

    /// `dst = map` (the two-slot `ld_imm64` with a map fd).
    pub(crate) fn ld_map_fd(&mut self, dst: u8, fd: i32) {
        self.push(LD | IMM | Size::Dw as u8, dst, PSEUDO_MAP_FD, 0, fd);
        self.push(0, 0, 0, 0, 0);
    }

    /// `if dst <cond> imm goto target`.
    pub(crate) fn jmp_imm(&mut self, cond: Cond, dst: u8, imm: i32, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.push(JMP | cond as u8 | K, dst, 0, 0, imm);
    }

    /// `goto target`.
    pub(crate) fn ja(&mut self, target: Label) {
        self.fixups.push((self.insns.len(), target));
        self.push(JMP | JA, 0, 0, 0, 0);
    }

    /// Call helper number `id`.
    pub(crate) fn call_helper(&mut self, id: i32) {
        self.push(JMP | CALL, 0, 0, 0, id);
    }

    /// Call the vmlinux kernel function with BTF id `btf_id` (`off` 0 = vmlinux).
    pub(crate) fn call_kfunc(&mut self, btf_id: u32) {
        self.push(JMP | CALL, 0, PSEUDO_KFUNC_CALL, 0, btf_id as i32);
    }

    /// `return r0`.
    pub(crate) fn exit(&mut self) {
        self.push(JMP | EXIT, 0, 0, 0, 0);
    }

    /// `r0 = verdict; return`.
    pub(crate) fn ret(&mut self, verdict: i32) {
        self.mov_imm(reg::R0, verdict);
        self.exit();
    }

    /// Resolves the jumps.
    pub(crate) fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for &(at, Label(l)) in &self.fixups {
            let to = self.labels[l].ok_or(AsmError::Unbound(l))?;
            let off = i16::try_from(to as i64 - at as i64 - 1)
                .map_err(|_| AsmError::TooFar { from: at, to })?;
            self.insns[at].off = off;
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::{reg::*, *};

    #[test]
    fn encodes_like_the_kernel() {
        let mut a = Asm::default();
        a.mov_reg(R6, R1); // bf 16 00 00 00000000
        a.load(Size::B, R2, R9, 5); // 71 92 05 00
        a.store_imm(Size::W, R10, -8, 0x7473_2e2e); // 62 0a f8 ff
        a.ld_map_fd(R1, 7); // 18 11 .. imm 7, then zero
        a.call_kfunc(1234); // 85 20 ...
        a.exit();
        let i = a.finish().unwrap();
        assert_eq!(
            i[0],
            Insn {
                code: 0xbf,
                regs: 0x16,
                off: 0,
                imm: 0
            }
        );
        assert_eq!(
            i[1],
            Insn {
                code: 0x71,
                regs: 0x92,
                off: 5,
                imm: 0
            }
        );
        assert_eq!(
            i[2],
            Insn {
                code: 0x62,
                regs: 0x0a,
                off: -8,
                imm: 0x7473_2e2e
            }
        );
        assert_eq!(
            i[3],
            Insn {
                code: 0x18,
                regs: 0x11,
                off: 0,
                imm: 7
            }
        );
        assert_eq!(
            i[4],
            Insn {
                code: 0,
                regs: 0,
                off: 0,
                imm: 0
            }
        );
        assert_eq!(
            i[5],
            Insn {
                code: 0x85,
                regs: 0x20,
                off: 0,
                imm: 1234
            }
        );
        assert_eq!(
            i[6],
            Insn {
                code: 0x95,
                regs: 0,
                off: 0,
                imm: 0
            }
        );
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn resolves_forward_and_backward_labels() {
        let mut a = Asm::default();
        let end = a.label();
        let top = a.label();
        a.bind(top);
        a.jmp_imm(Cond::Ne, R2, 0x2e, end); // 0
        a.ja(top); // 1
        a.bind(end);
        a.ret(1); // 2, 3
        let i = a.finish().unwrap();
        assert_eq!(i[0].code, 0x55);
        assert_eq!(i[0].off, 1);
        assert_eq!(i[1].off, -2);
    }

    #[test]
    fn unbound_label_is_an_error() {
        let mut a = Asm::default();
        let l = a.label();
        a.ja(l);
        assert!(matches!(a.finish(), Err(AsmError::Unbound(0))));
    }
}
