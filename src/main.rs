//! The `wiresocket` binary: installs the allocator and hands over to the CLI.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match wiresocket::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wiresocket: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
