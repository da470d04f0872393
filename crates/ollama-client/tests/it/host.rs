//! `OLLAMA_HOST` parsing: the expected strings are the cases of Ollama's own
//! `envconfig/config_test.go` `TestHost` (value → `Host().String()`).

use loraforge_ollama_client::{Client, ClientError, OllamaHost};

#[test]
fn parses_like_ollama_envconfig_host() {
    let cases = [
        ("", "http://127.0.0.1:11434"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        (":1234", "http://:1234"),
        ("1.2.3.4:1234", "http://1.2.3.4:1234"),
        ("example.com", "http://example.com:11434"),
        ("example.com:1234", "http://example.com:1234"),
        (":0", "http://:0"),
        (":66000", "http://:11434"),
        (":-1", "http://:11434"),
        ("[::1]", "http://[::1]:11434"),
        ("[::]", "http://[::]:11434"),
        ("::1", "http://[::1]:11434"),
        ("[::1]:1337", "http://[::1]:1337"),
        (" 1.2.3.4 ", "http://1.2.3.4:11434"),
        ("\"1.2.3.4\"", "http://1.2.3.4:11434"),
        (" \" 1.2.3.4 \" ", "http://1.2.3.4:11434"),
        ("'1.2.3.4'", "http://1.2.3.4:11434"),
        ("http://1.2.3.4", "http://1.2.3.4:80"),
        ("http://1.2.3.4:4321", "http://1.2.3.4:4321"),
        ("https://1.2.3.4", "https://1.2.3.4:443"),
        ("https://1.2.3.4:4321", "https://1.2.3.4:4321"),
        (
            "https://example.com/ollama",
            "https://example.com:443/ollama",
        ),
        ("ollama.com", "https://ollama.com:443"),
    ];
    for (value, expected) in cases {
        assert_eq!(
            OllamaHost::parse(value).to_string(),
            expected,
            "OLLAMA_HOST={value:?}"
        );
    }
}

#[test]
fn parts_are_exposed() {
    let h = OllamaHost::parse("https://example.com:8443/proxy/ollama");
    assert_eq!(h.scheme(), "https");
    assert_eq!(h.host(), "example.com");
    assert_eq!(h.port(), 8443);
    assert_eq!(h.path(), "proxy/ollama");
    assert_eq!(
        h.url().unwrap().as_str(),
        "https://example.com:8443/proxy/ollama/"
    );
}

#[test]
fn base_urls_for_connecting() {
    // An empty host connects to the local machine, as Go's dialer does for ":port".
    assert_eq!(
        OllamaHost::parse(":1234").url().unwrap().as_str(),
        "http://127.0.0.1:1234/"
    );
    assert_eq!(
        OllamaHost::parse("::1").url().unwrap().as_str(),
        "http://[::1]:11434/"
    );
    assert_eq!(
        OllamaHost::parse("").url().unwrap().as_str(),
        "http://127.0.0.1:11434/"
    );
}

#[test]
fn unusable_hosts_are_invalid_host_errors() {
    for value in [
        "ftp://example.com",
        "http://exa mple.com",
        "unix:///tmp/ollama.sock",
    ] {
        let err = Client::for_host(value).unwrap_err();
        assert!(
            matches!(err, ClientError::InvalidHost { .. }),
            "{value:?} gave {err:?}"
        );
    }
}
