//! What a guest may use, shared by the master (which checks modules at upload) and the
//! executor (which links and runs them): the WebAssembly features, the WASI preview1
//! functions with their core signatures, and how many memories and tables, how large.

use wasmparser::WasmFeatures;

/// The WebAssembly features the executors' wasmtime accepts, as wasmtime 48 derives them
/// (`Config::features`): WebAssembly 3.0, less what needs the `gc` and `threads` features
/// its build leaves out (garbage-collected types such as `externref` tables, exceptions,
/// shared memories), plus components. An executor test compiles a probe of each against it.
pub fn features() -> WasmFeatures {
    (WasmFeatures::WASM3 | WasmFeatures::COMPONENT_MODEL)
        & !(WasmFeatures::GC_TYPES | WasmFeatures::EXCEPTIONS | WasmFeatures::THREADS)
}

/// Most memories and tables a core module (or a component, all its modules together) may
/// define: the executor's instance pool is sized for them.
pub const MAX_MEMORIES: u32 = 8;
pub const MAX_TABLES: u32 = 16;

/// The module WASI preview1 functions are imported from.
pub const PREVIEW1_MODULE: &str = "wasi_snapshot_preview1";

/// Every WASI preview1 function: name, parameters and results, `i` an i32 and `I` an i64
/// (as `wasi_snapshot_preview1.witx` lowers them to core wasm).
pub const PREVIEW1: &[(&str, &str, &str)] = &[
    ("args_get", "ii", "i"),
    ("args_sizes_get", "ii", "i"),
    ("environ_get", "ii", "i"),
    ("environ_sizes_get", "ii", "i"),
    ("clock_res_get", "ii", "i"),
    ("clock_time_get", "iIi", "i"),
    ("fd_advise", "iIIi", "i"),
    ("fd_allocate", "iII", "i"),
    ("fd_close", "i", "i"),
    ("fd_datasync", "i", "i"),
    ("fd_fdstat_get", "ii", "i"),
    ("fd_fdstat_set_flags", "ii", "i"),
    ("fd_fdstat_set_rights", "iII", "i"),
    ("fd_filestat_get", "ii", "i"),
    ("fd_filestat_set_size", "iI", "i"),
    ("fd_filestat_set_times", "iIIi", "i"),
    ("fd_pread", "iiiIi", "i"),
    ("fd_prestat_get", "ii", "i"),
    ("fd_prestat_dir_name", "iii", "i"),
    ("fd_pwrite", "iiiIi", "i"),
    ("fd_read", "iiii", "i"),
    ("fd_readdir", "iiiIi", "i"),
    ("fd_renumber", "ii", "i"),
    ("fd_seek", "iIii", "i"),
    ("fd_sync", "i", "i"),
    ("fd_tell", "ii", "i"),
    ("fd_write", "iiii", "i"),
    ("path_create_directory", "iii", "i"),
    ("path_filestat_get", "iiiii", "i"),
    ("path_filestat_set_times", "iiiiIIi", "i"),
    ("path_link", "iiiiiii", "i"),
    ("path_open", "iiiiiIIii", "i"),
    ("path_readlink", "iiiiii", "i"),
    ("path_remove_directory", "iii", "i"),
    ("path_rename", "iiiiii", "i"),
    ("path_symlink", "iiiii", "i"),
    ("path_unlink_file", "iii", "i"),
    ("poll_oneoff", "iiii", "i"),
    ("proc_exit", "i", ""),
    ("proc_raise", "i", "i"),
    ("sched_yield", "", "i"),
    ("random_get", "ii", "i"),
    ("sock_accept", "iii", "i"),
    ("sock_recv", "iiiiii", "i"),
    ("sock_send", "iiiii", "i"),
    ("sock_shutdown", "ii", "i"),
];

/// The core signature of preview1 function `name`, written as in [`PREVIEW1`].
pub fn preview1_signature(name: &str) -> Option<(&'static str, &'static str)> {
    PREVIEW1.iter().find(|(n, ..)| *n == name).map(|(_, params, results)| (*params, *results))
}

/// Most elements a guest's table may have (the executor's instance pool is sized for it).
pub const MAX_TABLE_ELEMENTS: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_of_the_witx_once() {
        let mut names: Vec<&str> = PREVIEW1.iter().map(|(n, ..)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 46);
        assert_eq!(preview1_signature("fd_write"), Some(("iiii", "i")));
        assert_eq!(preview1_signature("does_not_exist"), None);
    }
}
