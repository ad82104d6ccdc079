# ensure_venv DIR REQUIREMENTS: a Python virtualenv at DIR with REQUIREMENTS
# installed, kept between runs and made again when REQUIREMENTS changes.
# The checks that use a Python tool (deploy, api, cloudevents) source this.
ensure_venv() {
    local venv=$1 requirements=$2
    local stamp=$venv/.requirements
    if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
        echo "making the virtualenv $venv from $requirements" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$stamp"
    fi
}
