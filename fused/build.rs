//! Release builds lay the binary out to keep less of it resident: `link/layout.rs`.
include!("../link/layout.rs");

fn main() {
    link_layout();
}
