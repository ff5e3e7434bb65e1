//! The skill taxonomy shipped with Torch: what `Taxonomy::default()` knows.
//!
//! Each row is `(skill, synonyms, keywords, file extensions)`. Keywords are
//! single words matched whole and case-insensitively; they were chosen to be
//! specific (a bare `go` or `c` is too common in English to be evidence, so Go
//! and C are recognised by `golang`, `gcc`, file extensions and the like).
//! An extension may point at more than one skill (`tsx` is TypeScript and
//! frontend work).

/// `(skill, synonyms, keywords, extensions)`.
pub(crate) type Row = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

pub(crate) const DEFAULT_SKILLS: &[Row] = &[
    (
        "rust",
        &["rs", "rustlang"],
        &["rust", "cargo", "rustc", "clippy", "rustfmt", "tokio", "serde", "cargo.toml"],
        &["rs"],
    ),
    (
        "python",
        &["py", "python3", "py3"],
        &[
            "python", "python3", "pip", "pytest", "django", "flask", "fastapi", "numpy",
            "poetry", "virtualenv", "venv", "pyproject.toml", "requirements.txt",
        ],
        &["py", "pyi"],
    ),
    (
        "go",
        &["golang"],
        &["golang", "goroutine", "goroutines", "gofmt", "go.mod", "go.sum"],
        &["go"],
    ),
    (
        "javascript",
        &["js", "node", "nodejs", "ecmascript"],
        &["javascript", "node.js", "nodejs", "npm", "yarn", "pnpm", "webpack", "eslint", "package.json"],
        &["js", "mjs", "cjs", "jsx"],
    ),
    (
        "typescript",
        &["ts"],
        &["typescript", "tsc", "deno", "tsconfig.json"],
        &["ts", "tsx", "mts"],
    ),
    (
        "java",
        &["jvm"],
        &["java", "maven", "gradle", "junit", "spring", "pom.xml"],
        &["java", "kt", "gradle"],
    ),
    (
        "c",
        &["ansi-c", "c99", "c11"],
        &["gcc", "malloc", "segfault", "valgrind"],
        &["c", "h"],
    ),
    (
        "cpp",
        &["c++", "cxx"],
        &["c++", "cpp", "cmake", "cmakelists.txt", "stl"],
        &["cpp", "cc", "cxx", "hpp", "hh", "hxx"],
    ),
    (
        "sh",
        &["bash", "shell", "zsh", "posix-sh"],
        &["bash", "shell", "shellcheck", "zsh", "sh"],
        &["sh", "bash", "zsh"],
    ),
    (
        "testing",
        &["test", "tests", "qa"],
        &[
            "test", "tests", "testing", "unittest", "pytest", "jest", "junit", "mocha",
            "coverage", "flaky", "tdd", "proptest", "e2e", "regression",
        ],
        &[],
    ),
    (
        "review",
        &["code-review", "reviewing"],
        &["review", "reviews", "reviewer", "refactor", "refactoring", "lint", "pr"],
        &[],
    ),
    (
        "docs",
        &["documentation", "doc", "writing"],
        &["docs", "documentation", "readme", "readme.md", "docstring", "changelog", "tutorial", "mdbook"],
        &["md", "rst", "adoc"],
    ),
    (
        "security",
        &["sec", "appsec"],
        &[
            "security", "vulnerability", "vulnerabilities", "cve", "xss", "csrf", "owasp",
            "pentest", "exploit", "secrets", "sast", "audit",
        ],
        &["pem"],
    ),
    (
        "devops",
        &["ops", "infra", "infrastructure", "sre", "docker", "k8s", "kubernetes", "terraform", "ci"],
        &[
            "docker", "dockerfile", "kubernetes", "k8s", "kubectl", "helm", "terraform",
            "ansible", "ci", "pipeline", "deploy", "deployment", "github-actions", "jenkins",
            "nginx", "systemd",
        ],
        &["tf", "hcl"],
    ),
    (
        "data",
        &["sql", "database", "db", "analytics", "pandas"],
        &[
            "sql", "pandas", "postgres", "postgresql", "mysql", "sqlite", "etl", "dataframe",
            "spark", "dbt", "csv", "parquet", "bigquery",
        ],
        &["sql", "csv", "parquet"],
    ),
    (
        "frontend",
        &["web", "ui", "fe", "react", "css", "html"],
        &[
            "react", "css", "html", "vue", "svelte", "angular", "frontend", "tailwind", "dom",
            "nextjs", "next.js",
        ],
        &["css", "scss", "sass", "less", "html", "htm", "vue", "svelte", "jsx", "tsx"],
    ),
    (
        "ml",
        &["machine-learning", "ai", "deep-learning"],
        &[
            "ml", "pytorch", "tensorflow", "keras", "sklearn", "scikit-learn", "embeddings",
            "llm", "finetune", "fine-tune", "neural", "huggingface",
        ],
        &["ipynb", "onnx", "safetensors"],
    ),
];
