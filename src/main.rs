fn main() -> std::process::ExitCode {
    lanyard::cli::main()
}
