"""Write the ``assistant`` demo data set (intent + BIO slots, JointBERT layout) from templates and slot-value lists.

Written by the polytask authors; these are NOT real user utterances. Run from anywhere::

    python src/polytask/demo_data/make_assistant.py            # rewrites src/polytask/demo_data/assistant/
    python src/polytask/demo_data/make_assistant.py --check    # regenerate in memory, fail if the files differ

How it works (fixed seed ``SEED``, so the output is byte-for-byte reproducible):

- Every intent has a list of templates; ``{slot}`` marks a slot. Each intent's templates are shuffled and split:
  ``HELD_OUT_TEMPLATES["test"]`` of them are used only in test, ``HELD_OUT_TEMPLATES["dev"]`` only in dev, the rest
  in every split.
- Every slot-value list is shuffled and split 60/20/20 into train / dev / test values.
- A train sentence uses a train template and train values only. A dev (test) sentence uses, with probability 1/2
  each, a dev-only (test-only) template instead of a train template, and, slot by slot, a dev-only (test-only)
  value instead of a train value. So about half the dev/test sentences have a template never seen in training and
  most have at least one slot value never seen in training.
- All sentences are distinct: none repeats within a split, no dev or test sentence occurs in train, and no test
  sentence occurs in dev.
- Intents are balanced: the same number of sentences per intent in every split (sizes in ``SIZES``).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

SEED = 20240611
SIZES = {"train": 600, "dev": 152, "test": 152}  # multiples of the 8 intents
HELD_OUT_TEMPLATES = {"dev": 1, "test": 2}
VALUE_SHARES = (0.6, 0.2, 0.2)  # train / dev / test share of every slot-value list

TEMPLATES: dict[str, list[str]] = {
    "set_alarm": [
        "set an alarm for {time}",
        "wake me up at {time}",
        "wake me up at {time} {date}",
        "set an alarm for {time} {date}",
        "i need an alarm at {time}",
        "can you set my alarm for {time} please",
        "alarm at {time} {date}",
        "please wake me {date} at {time}",
        "get me up at {time}",
        "create an alarm for {date} at {time}",
        "set the alarm to {time}",
        "i want to wake up at {time} {date}",
    ],
    "set_timer": [
        "set a timer for {duration}",
        "start a timer for {duration}",
        "timer for {duration} please",
        "count down {duration}",
        "can you time {duration} for me",
        "put a timer on for {duration}",
        "i need a timer for {duration}",
        "set the kitchen timer for {duration}",
        "let me know when {duration} have passed",
        "start counting down from {duration}",
        "begin a countdown of {duration}",
    ],
    "get_weather": [
        "what is the weather in {city}",
        "what is the weather like in {city} {date}",
        "will it rain in {city} {date}",
        "how hot is it in {city}",
        "weather forecast for {city}",
        "do i need an umbrella {date}",
        "is it going to snow in {city} {date}",
        "tell me the forecast for {date}",
        "how cold will it be in {city} {date}",
        "what's the temperature in {city}",
        "is it sunny in {city} right now",
        "give me the weather for {city} {date}",
    ],
    "play_music": [
        "play {artist}",
        "play some {genre}",
        "play some {genre} music",
        "put on {artist} in the {room}",
        "i want to listen to {artist}",
        "play something by {artist}",
        "play some {genre} in the {room}",
        "can you play {artist} please",
        "shuffle songs by {artist}",
        "start my {genre} playlist",
        "listen to {genre} music",
        "play music by {artist} on the {room} speaker",
    ],
    "send_message": [
        "text {contact} that {message}",
        "send a message to {contact} saying {message}",
        "tell {contact} {message}",
        "message {contact} {message}",
        "let {contact} know that {message}",
        "write to {contact} {message}",
        "send a text to {contact}",
        "can you text {contact} and say {message}",
        "drop {contact} a message that {message}",
        "send {contact} a note saying {message}",
        "reply to {contact} {message}",
    ],
    "turn_on_lights": [
        "turn on the lights in the {room}",
        "switch on the {room} lights",
        "lights on in the {room}",
        "can you turn the {room} lights on",
        "turn on the lights",
        "i need some light in the {room}",
        "brighten the {room}",
        "put the lights on in the {room} please",
        "switch the {room} light on",
        "make the {room} brighter",
        "it is too dark in the {room}",
    ],
    "turn_off_lights": [
        "turn off the lights in the {room}",
        "switch off the {room} lights",
        "lights off in the {room}",
        "can you turn the {room} lights off",
        "turn off all the lights",
        "kill the lights in the {room}",
        "it is too bright in the {room}",
        "switch the {room} light off",
        "darken the {room}",
        "no more lights in the {room} please",
        "shut the lights off in the {room}",
    ],
    "add_to_list": [
        "add {item} to my {list} list",
        "put {item} on the {list} list",
        "add {item} to the list",
        "i need to buy {item}",
        "remember to get {item}",
        "we are out of {item} add it to the {list} list",
        "please add {item} to my {list} list",
        "can you put {item} on my list",
        "add {item} and {item} to my {list} list",
        "note down {item} for the {list} list",
        "don't let me forget {item}",
    ],
}

VALUES: dict[str, list[str]] = {
    "time": ["7 am", "6:30", "half past six", "noon", "midnight", "5 pm", "quarter to eight", "7:15 am",
             "nine o'clock", "8 in the morning", "10 pm", "six thirty", "4:45", "eleven", "5:50 am", "seven fifteen",
             "quarter past nine", "6 am", "9:30 pm", "three in the afternoon", "2 pm", "8:05", "ten thirty",
             "half past five", "5:45 am"],
    "date": ["tomorrow", "today", "tonight", "on monday", "on friday", "this weekend", "next tuesday",
             "on saturday morning", "the day after tomorrow", "this evening", "on sunday", "next week",
             "tomorrow morning", "on wednesday", "every weekday", "on thursday", "this afternoon", "on new year's day"],
    "duration": ["five minutes", "ten minutes", "1 hour", "30 seconds", "twenty minutes", "an hour and a half",
                 "45 minutes", "two hours", "90 seconds", "fifteen minutes", "3 minutes", "half an hour",
                 "25 minutes", "one minute", "40 minutes", "12 minutes", "eight minutes", "three hours"],
    "city": ["paris", "london", "new york", "tokyo", "berlin", "madrid", "san francisco", "sydney", "cairo",
             "toronto", "mumbai", "rome", "lisbon", "chicago", "seoul", "amsterdam", "nairobi", "buenos aires",
             "oslo", "dublin", "mexico city", "vienna", "los angeles", "bangkok", "edinburgh", "cape town"],
    "artist": ["adele", "the beatles", "taylor swift", "miles davis", "daft punk", "queen", "beyonce",
               "ed sheeran", "nina simone", "radiohead", "bob marley", "coldplay", "kendrick lamar", "abba",
               "billie eilish", "the rolling stones", "david bowie", "dua lipa", "johnny cash", "frank sinatra",
               "bruno mars", "lady gaga", "john coltrane", "fleetwood mac"],
    "genre": ["jazz", "rock", "classical", "hip hop", "country", "reggae", "blues", "lo fi", "heavy metal", "pop",
              "techno", "folk", "soul", "disco", "k pop", "bossa nova", "punk", "opera"],
    "contact": ["mom", "dad", "alice", "john", "my sister", "sarah", "grandma", "tom", "emma", "my boss", "david",
                "lucy", "carlos", "priya", "ahmed", "my wife", "my husband", "mike", "olivia", "james", "chen",
                "anna", "my brother", "uncle bob"],
    "message": ["i am running late", "dinner is ready", "see you at the station", "call me back when you can",
                "the meeting moved to friday", "happy birthday", "i will be home soon", "do not forget the keys",
                "thanks for today", "the kids are asleep", "can you pick up milk", "we are out of coffee",
                "i landed safely", "the game starts at eight", "good luck with the exam", "i love you",
                "the package arrived", "where are you", "let's meet for lunch", "i left the door open"],
    "room": ["kitchen", "living room", "bedroom", "bathroom", "office", "hallway", "garage", "dining room",
             "kids room", "basement", "garden", "attic", "study", "guest room", "porch", "nursery", "laundry room"],
    "item": ["milk", "eggs", "bread", "coffee", "toilet paper", "apples", "olive oil", "batteries", "dish soap",
             "chicken", "rice", "orange juice", "paper towels", "tomatoes", "butter", "cat food", "shampoo",
             "bananas", "light bulbs", "pasta", "cheese", "tea bags", "sunscreen", "flour", "dog food", "onions"],
    "list": ["shopping", "grocery", "packing", "party", "camping", "hardware", "christmas", "weekend", "birthday",
             "costco", "pharmacy"],
}

SPLITS = ("train", "dev", "test")
SLOT = re.compile(r"\{(\w+)\}")


def _split_list(items: list[str], shares: tuple[float, ...], rng: random.Random) -> dict[str, list[str]]:
    items = list(items)
    rng.shuffle(items)
    n_dev = max(1, round(len(items) * shares[1]))
    n_test = max(1, round(len(items) * shares[2]))
    return {"test": items[:n_test], "dev": items[n_test:n_test + n_dev], "train": items[n_test + n_dev:]}


def partitions(rng: random.Random) -> tuple[dict[str, dict[str, list[str]]], dict[str, dict[str, list[str]]]]:
    """-> (intent -> split -> templates, slot -> split -> values), each split disjoint."""
    templates = {}
    for intent, items in TEMPLATES.items():
        items = list(items)
        rng.shuffle(items)
        n_test, n_dev = HELD_OUT_TEMPLATES["test"], HELD_OUT_TEMPLATES["dev"]
        templates[intent] = {"test": items[:n_test], "dev": items[n_test:n_test + n_dev],
                             "train": items[n_test + n_dev:]}
    values = {slot: _split_list(items, VALUE_SHARES, rng) for slot, items in VALUES.items()}
    return templates, values


def fill(template: str, pick) -> tuple[list[str], list[str]]:
    """Template + a value picker -> (words, BIO tags). A slot used twice gets two different values."""
    words: list[str] = []
    tags: list[str] = []
    used: dict[str, set[str]] = {}
    pos = 0
    for m in SLOT.finditer(template):
        literal = template[pos:m.start()].split()
        words += literal
        tags += ["O"] * len(literal)
        slot = m.group(1)
        value = pick(slot, used.setdefault(slot, set()))
        used[slot].add(value)
        value_words = value.split()
        words += value_words
        tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(value_words) - 1)
        pos = m.end()
    tail = template[pos:].split()
    words += tail
    tags += ["O"] * len(tail)
    return words, tags


def generate(seed: int = SEED) -> dict[str, list[tuple[list[str], list[str], str]]]:
    """-> split -> [(words, tags, intent)], shuffled, intents balanced."""
    rng = random.Random(seed)
    templates, values = partitions(rng)
    intents = list(TEMPLATES)
    seen: set[tuple[str, ...]] = set()  # sentences of earlier splits (train, then dev): never repeated later
    out: dict[str, list[tuple[list[str], list[str], str]]] = {}
    for split in SPLITS:
        rows: list[tuple[list[str], list[str], str]] = []
        per_intent = SIZES[split] // len(intents)
        this_split: set[tuple[str, ...]] = set()
        for intent in intents:
            made = 0
            tries = 0
            while made < per_intent:
                tries += 1
                if tries > 200 * per_intent:
                    raise RuntimeError(f"cannot make {per_intent} distinct {split} sentences for {intent}")
                held_out = split != "train"
                use_new_template = held_out and rng.random() < 0.5
                template = rng.choice(templates[intent][split if use_new_template else "train"])

                def pick(slot: str, avoid: set[str]) -> str:
                    pool_split = split if held_out and rng.random() < 0.5 else "train"
                    pool = [v for v in values[slot][pool_split] if v not in avoid] or \
                           [v for v in values[slot]["train"] if v not in avoid]
                    return rng.choice(pool)

                words, tags = fill(template, pick)
                key = tuple(words)
                if key in seen or key in this_split:
                    continue  # every sentence is distinct, and no dev/test sentence copies a train (or dev) one
                this_split.add(key)
                rows.append((words, tags, intent))
                made += 1
        rng.shuffle(rows)
        seen |= this_split
        out[split] = rows
    return out


def render(rows: list[tuple[list[str], list[str], str]]) -> dict[str, str]:
    return {
        "seq.in": "".join(" ".join(w) + "\n" for w, _, _ in rows),
        "seq.out": "".join(" ".join(t) + "\n" for _, t, _ in rows),
        "label": "".join(i + "\n" for _, _, i in rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "assistant")
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = parser.parse_args(argv)
    data = generate()
    differ = []
    for split, rows in data.items():
        folder = args.out / split
        for name, text in render(rows).items():
            path = folder / name
            if args.check:
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    differ.append(str(path))
            else:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
        print(f"{split}: {len(rows)} sentences", file=sys.stderr)
    if differ:
        print("differs from the generator's output: " + ", ".join(differ), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
