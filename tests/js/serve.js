// The oracles' long-running mode (tests/oracle.h): a suite starts one process
// and asks it one line at a time, instead of starting Node for every model.
// serve(load, run) prints "ready" once load() has returned (or "absent" and
// the reason when it throws: a module not installed), then answers each line
// of stdin, split at spaces into run()'s arguments, with one line: "ok " and
// run()'s result, or "error " and the message's first line. Requests run one
// at a time.
'use strict';
const readline = require('readline');

function reply(s) {
    process.stdout.write(String(s).split('\n')[0] + '\n');
}

function message(e) {
    return e && e.message ? e.message : e;
}

module.exports = function serve(load, run) {
    let state;
    try {
        state = load();
    } catch (e) {
        reply('absent ' + message(e));
        return;
    }
    reply('ready');
    let chain = Promise.resolve();
    readline.createInterface({input: process.stdin}).on('line', (line) => {
        chain = chain.then(() => run(state, line.split(' ')))
            .then((r) => reply('ok ' + r), (e) => reply('error ' + message(e)));
    });
};
