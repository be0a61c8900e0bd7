fn main() -> std::process::ExitCode {
    lrsweep_worker::cli::main()
}
