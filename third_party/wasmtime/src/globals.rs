//! What a room snapshot needs of a module that the module does not export: its mutable globals
//! (clang's and rustc's `__stack_pointer`, an allocator's state). The module is rewritten once, at
//! load time, so that each mutable global it defines is also exported under a reserved name
//! (`stateroom:global:<k>`, k counting them in index order; no toolchain emits a name with a
//! colon), which is Wizer's approach. The code and every other section are left byte for byte:
//! only the export section's count and its new entries change.

use std::ops::Range;

use wasmparser::{Operator, Parser, Payload, TypeRef, ValType};
use wasmtime_c_api::{wasm_byte_vec_t, wasmtime_error_t};

/// The prefix of the added exports' names.
pub const PREFIX: &str = "stateroom:global:";

/// What the rewrite found.
#[repr(C)]
#[derive(Default)]
pub struct stateroom_module_globals_t {
    /// Mutable globals now exported as `stateroom:global:0` to `count - 1`, in index order.
    pub count: u32,
    /// Mutable globals of a type a snapshot cannot hold (v128, references): not exported.
    pub unsupported: u32,
    /// Mutable globals the module imports (their values live outside it).
    pub imported_mutable: u32,
    /// Whether the code can change a table (table.set, .grow, .fill, .copy, .init, elem.drop):
    /// its tables are then state too, which a snapshot does not hold.
    pub tables_change: bool,
}

fn read_leb(bytes: &[u8], at: usize) -> Option<(u32, usize)> {
    let mut value: u64 = 0;
    for i in 0..5 {
        let byte = *bytes.get(at + i)?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return u32::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

fn write_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Where the section whose contents are `contents` begins: at its id byte, before the size (a LEB
/// that may be padded, whose last byte is the one before `contents`).
fn section_start(bytes: &[u8], contents: &Range<usize>) -> Option<usize> {
    let mut at = contents.start.checked_sub(1)?;
    while at > 0 && bytes[at - 1] & 0x80 != 0 {
        at -= 1;
    }
    at.checked_sub(1)
}

pub fn rewrite(bytes: &[u8]) -> Result<(Vec<u8>, stateroom_module_globals_t), String> {
    let mut info = stateroom_module_globals_t::default();
    let mut imported_globals = 0u32;
    let mut mutable: Vec<u32> = Vec::new();
    let mut exports: Option<(Range<usize>, u32)> = None;
    let mut names: Vec<String> = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    if let TypeRef::Global(ty) = import.map_err(|e| e.to_string())?.ty {
                        imported_globals += 1;
                        if ty.mutable {
                            info.imported_mutable += 1;
                        }
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.into_iter().enumerate() {
                    let ty = global.map_err(|e| e.to_string())?.ty;
                    if !ty.mutable {
                        continue;
                    }
                    match ty.content_type {
                        ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64 => {
                            mutable.push(imported_globals + i as u32)
                        }
                        _ => info.unsupported += 1,
                    }
                }
            }
            Payload::ExportSection(reader) => {
                exports = Some((reader.range(), reader.count()));
                for export in reader {
                    names.push(export.map_err(|e| e.to_string())?.name.to_string());
                }
            }
            Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
                while !ops.eof() {
                    match ops.read().map_err(|e| e.to_string())? {
                        Operator::TableSet { .. }
                        | Operator::TableGrow { .. }
                        | Operator::TableFill { .. }
                        | Operator::TableCopy { .. }
                        | Operator::TableInit { .. }
                        | Operator::ElemDrop { .. } => info.tables_change = true,
                        _ => {}
                    }
                }
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                return Err("a component, not a core module".to_string())
            }
            _ => {}
        }
    }
    if names.iter().any(|n| n.starts_with(PREFIX)) {
        return Err(format!("an export's name begins with the reserved `{PREFIX}`"));
    }
    let Some((contents, count)) = exports else {
        return Err("the module has no export section".to_string());
    };
    let start = section_start(bytes, &contents).ok_or("a malformed export section")?;
    let (_, count_len) = read_leb(bytes, contents.start).ok_or("a malformed export count")?;
    let added = u32::try_from(mutable.len()).map_err(|_| "too many globals")?;
    info.count = added;

    let mut section = Vec::new();
    write_leb(&mut section, count.checked_add(added).ok_or("too many exports")?);
    section.extend_from_slice(&bytes[contents.start + count_len..contents.end]);
    for (k, index) in mutable.iter().enumerate() {
        let name = format!("{PREFIX}{k}");
        write_leb(&mut section, name.len() as u32);
        section.extend_from_slice(name.as_bytes());
        section.push(0x03); // a global
        write_leb(&mut section, *index);
    }
    let mut out = Vec::with_capacity(bytes.len() + section.len() + 16);
    out.extend_from_slice(&bytes[..start]);
    out.push(7); // the export section's id
    write_leb(&mut out, u32::try_from(section.len()).map_err(|_| "export section too large")?);
    out.extend_from_slice(&section);
    out.extend_from_slice(&bytes[contents.end..]);
    Ok((out, info))
}

/// Rewrites the binary module `wasm` (`len` bytes) so that every mutable global it defines is also
/// exported as `stateroom:global:<k>`, into `out` (a new vector, freed with
/// `wasm_byte_vec_delete`), with what it found in `info`. An error (to free) when the module cannot
/// be read or rewritten.
///
/// # Safety
/// `wasm` must point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn stateroom_export_globals(
    wasm: *const u8,
    len: usize,
    out: &mut wasm_byte_vec_t,
    info: &mut stateroom_module_globals_t,
) -> Option<Box<wasmtime_error_t>> {
    let bytes = unsafe { std::slice::from_raw_parts(wasm, len) };
    match rewrite(bytes) {
        Ok((module, found)) => {
            out.set_buffer(module);
            *info = found;
            None
        }
        Err(message) => Some(Box::new(wasmtime_error_t::from(wasmtime_c_api::wasmtime::Error::msg(message)))),
    }
}
