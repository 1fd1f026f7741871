fn main() -> std::process::ExitCode {
    horde::cli::main()
}
