//! What a room snapshot needs of a module that the module does not export: its mutable globals
//! (clang's and rustc's `__stack_pointer`, an allocator's state) and, when its code changes its
//! tables, those tables and the functions they may hold. The module is rewritten once, at load
//! time, so that each of them is also exported under a reserved name (no toolchain emits a name
//! with a colon), which is Wizer's approach:
//! - `stateroom:global:<k>`: the mutable globals it defines, k counting them in index order;
//! - `stateroom:table:<k>`: the tables it defines, k counting them in index order (only when the
//!   code can change a table: otherwise its tables are what its element segments make them);
//! - `stateroom:func:<index>`: each function a table may hold (named by an element segment or a
//!   `ref.func`), under its index in the module's function space, so that a table entry can be
//!   saved as that index and put back.
//!
//! The code and every other section are left byte for byte: only the export section's count and
//! its new entries change.

use std::collections::BTreeSet;
use std::ops::Range;

use wasmparser::{ElementItems, Operator, OperatorsReader, Parser, Payload, TypeRef, ValType};
use wasmtime_c_api::{wasm_byte_vec_t, wasmtime_error_t};

/// The prefix of the added exports' names (globals; tables and functions have their own).
pub const PREFIX: &str = "stateroom:";
const GLOBAL_PREFIX: &str = "stateroom:global:";
const TABLE_PREFIX: &str = "stateroom:table:";
const FUNC_PREFIX: &str = "stateroom:func:";

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
    /// Tables now exported as `stateroom:table:0` to `tables - 1` (when `tables_change`).
    pub tables: u32,
    /// Tables a snapshot cannot hold although the code changes them: imported ones (their
    /// contents live outside the module) and those of references other than `funcref`.
    pub unsupported_tables: u32,
    /// Whether the code can change a table (table.set, .grow, .fill, .copy, .init): its tables are
    /// then state too, exported with the functions they may hold.
    pub tables_change: bool,
}

/// Adds the functions `ref.func` names in `ops` to `funcs`.
fn note_ref_funcs(mut ops: OperatorsReader<'_>, funcs: &mut BTreeSet<u32>) -> Result<(), String> {
    while !ops.eof() {
        if let Operator::RefFunc { function_index } = ops.read().map_err(|e| e.to_string())? {
            funcs.insert(function_index);
        }
    }
    Ok(())
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
    let mut imported_tables = 0u32;
    let mut mutable: Vec<u32> = Vec::new();
    let mut tables: Vec<(u32, bool)> = Vec::new(); // index, of funcref
    let mut funcs: BTreeSet<u32> = BTreeSet::new(); // the functions a table may hold
    let mut exports: Option<(Range<usize>, u32)> = None;
    let mut names: Vec<String> = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    match import.map_err(|e| e.to_string())?.ty {
                        TypeRef::Global(ty) => {
                            imported_globals += 1;
                            if ty.mutable {
                                info.imported_mutable += 1;
                            }
                        }
                        TypeRef::Table(_) => imported_tables += 1,
                        _ => {}
                    }
                }
            }
            Payload::TableSection(reader) => {
                for (i, table) in reader.into_iter().enumerate() {
                    let table = table.map_err(|e| e.to_string())?;
                    tables.push((imported_tables + i as u32, table.ty.element_type.is_func_ref()));
                    if let wasmparser::TableInit::Expr(expr) = table.init {
                        note_ref_funcs(expr.get_operators_reader(), &mut funcs)?;
                    }
                }
            }
            Payload::ElementSection(reader) => {
                for element in reader {
                    match element.map_err(|e| e.to_string())?.items {
                        ElementItems::Functions(indices) => {
                            for index in indices {
                                funcs.insert(index.map_err(|e| e.to_string())?);
                            }
                        }
                        ElementItems::Expressions(_, exprs) => {
                            for expr in exprs {
                                note_ref_funcs(expr.map_err(|e| e.to_string())?.get_operators_reader(), &mut funcs)?;
                            }
                        }
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.into_iter().enumerate() {
                    let global = global.map_err(|e| e.to_string())?;
                    note_ref_funcs(global.init_expr.get_operators_reader(), &mut funcs)?;
                    let ty = global.ty;
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
                        | Operator::TableInit { .. } => info.tables_change = true,
                        Operator::RefFunc { function_index } => {
                            funcs.insert(function_index);
                        }
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
    info.count = u32::try_from(mutable.len()).map_err(|_| "too many globals")?;
    // (name, kind, index) of every export to add.
    let mut added: Vec<(String, u8, u32)> = Vec::new();
    for (k, index) in mutable.iter().enumerate() {
        added.push((format!("{GLOBAL_PREFIX}{k}"), 0x03, *index));
    }
    if info.tables_change {
        info.unsupported_tables = imported_tables + tables.iter().filter(|(_, funcref)| !funcref).count() as u32;
        if info.unsupported_tables == 0 {
            for (k, (index, _)) in tables.iter().enumerate() {
                added.push((format!("{TABLE_PREFIX}{k}"), 0x01, *index));
            }
            for index in &funcs {
                added.push((format!("{FUNC_PREFIX}{index}"), 0x00, *index));
            }
            info.tables = tables.len() as u32;
        }
    }
    let added_count = u32::try_from(added.len()).map_err(|_| "too many exports")?;

    let mut section = Vec::new();
    write_leb(&mut section, count.checked_add(added_count).ok_or("too many exports")?);
    section.extend_from_slice(&bytes[contents.start + count_len..contents.end]);
    for (name, kind, index) in &added {
        write_leb(&mut section, name.len() as u32);
        section.extend_from_slice(name.as_bytes());
        section.push(*kind);
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
