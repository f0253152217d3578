fn main() -> std::process::ExitCode {
    lanyard::faces::cli::main()
}
