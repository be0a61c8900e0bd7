fn main() -> std::process::ExitCode {
    lrsweep_coordinator::cli::main()
}
