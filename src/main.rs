//! The `genledger` binary: parse the command line, set up logging, run, exit.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: glibc's malloc and free were a seventh of the CPU profile, and a
/// million-ID export spent 10-20% less CPU with mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's defaults trade memory for speed: freed pages go back to the
/// system only after a delay, and its arenas are committed up front. With
/// them a million-ID export peaked at 106-113 MiB; returning freed pages at
/// once and committing on demand brought it to 61-63 MiB at the same speed.
///
/// mimalloc reads its options when it starts, in a constructor that runs
/// before `main` and before the first allocation; set from `main` they came
/// too late (87 MiB). So they are set from a constructor too, in
/// `.init_array.00101`: the loader runs numbered entries first, in order,
/// then plain constructors such as mimalloc's.
#[cfg(target_os = "linux")]
mod allocator_options {
    use libmimalloc_sys::{mi_option_set, mi_option_t};

    /// Positions in mimalloc 3.3's `mi_option_e`, which libmimalloc-sys does
    /// not name; its version is pinned in Cargo.toml so that they cannot move.
    const ARENA_EAGER_COMMIT: mi_option_t = 4;
    const PURGE_DELAY: mi_option_t = 15;

    #[used]
    #[unsafe(link_section = ".init_array.00101")]
    static SET_BEFORE_MIMALLOC_STARTS: extern "C" fn() = set;

    extern "C" fn set() {
        // SAFETY: mi_option_set only writes mimalloc's option table; this runs
        // before any thread exists and before mimalloc reads the table.
        unsafe {
            mi_option_set(PURGE_DELAY, 0);
            mi_option_set(ARENA_EAGER_COMMIT, 0);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = genledger::cli::Cli::parse();
    // A daemon's log is its only report: one line per tick by default.
    let is_daemon = matches!(cli.command, genledger::cli::Command::Daemon(_));
    let verbose = if is_daemon {
        cli.verbose.max(1)
    } else {
        cli.verbose
    };
    genledger::logging::init(verbose, cli.quiet, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return genledger::exit::ExitStatus::Error.into();
        }
    };
    match runtime.block_on(genledger::app::run(cli)) {
        Ok(status) => status.into(),
        Err(error) => {
            eprintln!("error: {error:#}");
            genledger::app::exit_status_for(&error).into()
        }
    }
}

/// glibc gives each thread that allocates its own heap arena, up to eight per
/// core, and each arena keeps its freed memory. Rust allocations go to
/// mimalloc (above); this is for the C code that still uses glibc's malloc,
/// SQLite's page caches on the ledger connections' threads.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
