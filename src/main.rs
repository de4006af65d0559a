//! The `genledger` binary: parse the command line, set up logging, run, exit.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: glibc's malloc and free were a seventh of the CPU profile, and a
/// million-ID export spent 10-20% less CPU with mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Positions in mimalloc 3.3's `mi_option_e`, which libmimalloc-sys does not
/// name; its version is pinned in Cargo.toml so that they cannot move.
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: libc::c_int = 4;
#[cfg(target_os = "linux")]
const MI_OPTION_PURGE_DELAY: libc::c_int = 15;

/// mimalloc's defaults trade memory for speed: freed pages go back to the
/// system only after a delay, and its arenas are committed up front. With
/// them a million-ID export peaked at 106-113 MiB; returning freed pages at
/// once and committing on demand brought it to 61-63 MiB at the same speed.
///
/// mimalloc reads its options when it starts, in a constructor that runs
/// before `main` and before the first allocation; set from `main` they came
/// too late (87 MiB). So this runs as a constructor too, from
/// `.init_array.00101`: the loader runs numbered entries first, in order,
/// then plain constructors such as mimalloc's.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array.00101")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

#[cfg(target_os = "linux")]
extern "C" fn tune_allocator() {
    // SAFETY: mi_option_set only writes mimalloc's option table; it runs
    // before any thread exists and before mimalloc reads the table.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
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
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(genledger::app::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(genledger::app::exit_code_for(&error))
        }
    }
}

/// glibc gives each thread that allocates its own heap arena, up to eight per
/// core, and each arena keeps its freed memory. Rust allocations go to
/// mimalloc (above); this is for the C code that still uses glibc's malloc,
/// SQLite's page caches on three connections' threads.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
