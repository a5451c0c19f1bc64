"""A compositional caption grammar for the synthetic *Multi-Shapes* clips, in eight languages.

A clip is a coloured shape that moves (left, right, up, down) or changes size (grows, shrinks) over a
plain background. Captions are generated from the clip's attributes by a per-language grammar and a
lexicon written for this dataset (with gender agreement where the language needs it). Spanish is not
here on purpose: the demo produces it with the real apertium MT backend.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = ("red", "green", "blue", "yellow", "purple")
MOTIONS = ("left", "right", "up", "down", "grow", "shrink")
BACKGROUNDS = ("black", "white", "gray")
LANGUAGES = ("en", "de", "fr", "cs", "zh", "ru", "vi", "ja")

RGB = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 190),
}
BG_RGB = {"black": (15, 15, 15), "white": (240, 240, 240), "gray": (128, 128, 128)}


@dataclass(frozen=True)
class Clip:
    shape: str
    colour: str
    motion: str
    background: str


LEX = {
    "en": {
        "shape": {s: s for s in SHAPES},
        "colour": {c: c for c in COLOURS},
        "motion": {
            "left": "moves to the left",
            "right": "moves to the right",
            "up": "moves up",
            "down": "moves down",
            "grow": "grows",
            "shrink": "shrinks",
        },
        "bg": {"black": "black", "white": "white", "gray": "gray"},
        "templates": [
            "a {colour} {shape} {motion} on a {bg} background",
            "on a {bg} background, a {colour} {shape} {motion}",
        ],
    },
    "de": {  # shape: (noun, article "ein"/"eine", adjective ending)
        "shape": {
            "circle": ("Kreis", "ein", "er"),
            "square": ("Quadrat", "ein", "es"),
            "triangle": ("Dreieck", "ein", "es"),
            "star": ("Stern", "ein", "er"),
        },
        "colour": {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "violett"},
        "motion": {
            "left": "bewegt sich nach links",
            "right": "bewegt sich nach rechts",
            "up": "bewegt sich nach oben",
            "down": "bewegt sich nach unten",
            "grow": "wird größer",
            "shrink": "wird kleiner",
        },
        "bg": {"black": "schwarzem", "white": "weißem", "gray": "grauem"},
        "templates": [
            "{art} {colour}{end} {shape} {motion} vor {bg} Hintergrund",
            "vor {bg} Hintergrund {motion} {art} {colour}{end} {shape}",
        ],
    },
    "fr": {  # shape: (noun, gender)
        "shape": {
            "circle": ("cercle", "m"),
            "square": ("carré", "m"),
            "triangle": ("triangle", "m"),
            "star": ("étoile", "f"),
        },
        "colour": {
            "red": ("rouge", "rouge"),
            "green": ("vert", "verte"),
            "blue": ("bleu", "bleue"),
            "yellow": ("jaune", "jaune"),
            "purple": ("violet", "violette"),
        },
        "motion": {
            "left": "se déplace vers la gauche",
            "right": "se déplace vers la droite",
            "up": "monte",
            "down": "descend",
            "grow": "grandit",
            "shrink": "rétrécit",
        },
        "bg": {"black": "noir", "white": "blanc", "gray": "gris"},
        "templates": [
            "{art} {shape} {colour} {motion} sur un fond {bg}",
            "sur un fond {bg}, {art} {shape} {colour} {motion}",
        ],
    },
    "cs": {
        "shape": {
            "circle": ("kruh", "m"),
            "square": ("čtverec", "m"),
            "triangle": ("trojúhelník", "m"),
            "star": ("hvězda", "f"),
        },
        "colour": {
            "red": ("červený", "červená"),
            "green": ("zelený", "zelená"),
            "blue": ("modrý", "modrá"),
            "yellow": ("žlutý", "žlutá"),
            "purple": ("fialový", "fialová"),
        },
        "motion": {
            "left": "se pohybuje doleva",
            "right": "se pohybuje doprava",
            "up": "se pohybuje nahoru",
            "down": "se pohybuje dolů",
            "grow": "se zvětšuje",
            "shrink": "se zmenšuje",
        },
        "bg": {"black": "černém", "white": "bílém", "gray": "šedém"},
        "templates": ["{colour} {shape} {motion} na {bg} pozadí", "na {bg} pozadí {motion} {colour} {shape}"],
    },
    "zh": {
        "shape": {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形"},
        "colour": {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色"},
        "motion": {
            "left": "向左移动",
            "right": "向右移动",
            "up": "向上移动",
            "down": "向下移动",
            "grow": "变大",
            "shrink": "变小",
        },
        "bg": {"black": "黑色", "white": "白色", "gray": "灰色"},
        "templates": ["{colour}的{shape}在{bg}背景上{motion}", "在{bg}的背景上，一个{colour}的{shape}{motion}"],
    },
    "ru": {
        "shape": {
            "circle": ("круг", "m"),
            "square": ("квадрат", "m"),
            "triangle": ("треугольник", "m"),
            "star": ("звезда", "f"),
        },
        "colour": {
            "red": ("красный", "красная"),
            "green": ("зелёный", "зелёная"),
            "blue": ("синий", "синяя"),
            "yellow": ("жёлтый", "жёлтая"),
            "purple": ("фиолетовый", "фиолетовая"),
        },
        "motion": {
            "left": "движется влево",
            "right": "движется вправо",
            "up": "движется вверх",
            "down": "движется вниз",
            "grow": "растёт",
            "shrink": "уменьшается",
        },
        "bg": {"black": "чёрном", "white": "белом", "gray": "сером"},
        "templates": ["{colour} {shape} {motion} на {bg} фоне", "на {bg} фоне {colour} {shape} {motion}"],
    },
    "vi": {
        "shape": {"circle": "hình tròn", "square": "hình vuông", "triangle": "hình tam giác", "star": "ngôi sao"},
        "colour": {"red": "đỏ", "green": "xanh lá", "blue": "xanh dương", "yellow": "vàng", "purple": "tím"},
        "motion": {
            "left": "di chuyển sang trái",
            "right": "di chuyển sang phải",
            "up": "di chuyển lên trên",
            "down": "di chuyển xuống dưới",
            "grow": "to dần lên",
            "shrink": "nhỏ dần đi",
        },
        "bg": {"black": "đen", "white": "trắng", "gray": "xám"},
        "templates": [
            "một {shape} màu {colour} {motion} trên nền {bg}",
            "trên nền {bg}, một {shape} màu {colour} {motion}",
        ],
    },
    "ja": {
        "shape": {"circle": "円", "square": "正方形", "triangle": "三角形", "star": "星"},
        "colour": {"red": "赤い", "green": "緑の", "blue": "青い", "yellow": "黄色い", "purple": "紫の"},
        "motion": {
            "left": "左に動く",
            "right": "右に動く",
            "up": "上に動く",
            "down": "下に動く",
            "grow": "大きくなる",
            "shrink": "小さくなる",
        },
        "bg": {"black": "黒い", "white": "白い", "gray": "灰色の"},
        "templates": ["{bg}背景で{colour}{shape}が{motion}", "{colour}{shape}が{bg}背景の上で{motion}"],
    },
}


def scene_of(clip: Clip) -> str:
    """What a clip shows, ``"shape colour motion background"``: clips with the same scene match the same captions."""
    return f"{clip.shape} {clip.colour} {clip.motion} {clip.background}"


def caption(clip: Clip, language: str, template: int = 0) -> str:
    """The caption of ``clip`` in ``language`` with template ``template`` (0 or 1)."""
    lex = LEX[language]
    tpl = lex["templates"][template % len(lex["templates"])]
    motion, bg = lex["motion"][clip.motion], lex["bg"][clip.background]
    if language == "de":
        noun, art, end = lex["shape"][clip.shape]
        text = tpl.format(art=art, colour=lex["colour"][clip.colour], end=end, shape=noun, motion=motion, bg=bg)
    elif language in ("fr",):
        noun, gender = lex["shape"][clip.shape]
        colour = lex["colour"][clip.colour][gender == "f"]
        text = tpl.format(art="une" if gender == "f" else "un", shape=noun, colour=colour, motion=motion, bg=bg)
    elif language in ("cs", "ru"):
        noun, gender = lex["shape"][clip.shape]
        text = tpl.format(shape=noun, colour=lex["colour"][clip.colour][gender == "f"], motion=motion, bg=bg)
    else:
        text = tpl.format(shape=lex["shape"][clip.shape], colour=lex["colour"][clip.colour], motion=motion, bg=bg)
    return text[0].upper() + text[1:] if language not in ("zh", "ja") else text
