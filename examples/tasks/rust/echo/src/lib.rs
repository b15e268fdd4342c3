//! echo: returns its input unchanged.

wit_bindgen::generate!({ world: "task", path: "../../../../wit" });

struct Echo;

impl Guest for Echo {
    fn run(input: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(input)
    }
}

export!(Echo);
