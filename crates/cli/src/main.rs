fn main() {
    println!("loraforge {}", env!("CARGO_PKG_VERSION"));
}
