//! fib: the n-th Fibonacci number by naive recursion (input: n as text, default 25).

wit_bindgen::generate!({ world: "task", path: "../../../../wit" });

struct Fib;

fn fib(n: u32) -> u64 {
    if n < 2 {
        u64::from(n)
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

impl Guest for Fib {
    fn run(input: Vec<u8>) -> Result<Vec<u8>, String> {
        let text = String::from_utf8_lossy(&input);
        let text = text.trim();
        let n = if text.is_empty() {
            25
        } else {
            match text.parse::<u32>() {
                Ok(n) if n <= 90 => n,
                _ => return Err("input must be a number from 0 to 90".into()),
            }
        };
        Ok(fib(n).to_string().into_bytes())
    }
}

export!(Fib);
