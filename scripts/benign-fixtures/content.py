"""What the documents say. A document is a list of blocks:

  ("h", text)                    a heading
  ("p", text)                    a paragraph (wrapped by the writer, as Word or a PDF maker does)
  ("table", header, rows)        a table
  ("cols", [paragraphs], [paragraphs])   two columns side by side (PDF; elsewhere one after the other)

The school is Example Academy (the example configuration's); its people are in PUPILS and STAFF,
written to fixtures/benign/directory.csv. Benign documents name pupils only where schools do
(congratulations, team sheets, parents' evening slots) and name the SENCO and the DSL wherever
schools do (staff tables, letterheads, policies). Sensitive documents are about one named pupil's
exclusion, needs or health, or list pupils with such data: they must be held.
"""

SCHOOL = "Example Academy"
ADDRESS = "Example Academy, Meadow Lane, Anytown AN1 2BC"
PHONE = "01632 960000"

# Pupils: (forename, surname, date of birth, form). Ages fit the 2026/27 school year.
PUPILS = [
    ("Olivia", "Bennett", "2014-10-02", "7B"), ("Noah", "Fletcher", "2014-11-19", "7B"),
    ("Amara", "Okafor", "2015-01-07", "7B"), ("Harrison", "Doyle", "2015-03-22", "7B"),
    ("Freya", "Lindqvist", "2015-05-30", "7B"), ("Kai", "Mensah", "2015-08-14", "7B"),
    ("Ruby", "Castellano", "2013-09-09", "8C"), ("Theo", "Whitfield", "2013-12-01", "8C"),
    ("Aisha", "Rahman", "2014-02-17", "8C"), ("Finn", "O'Sullivan", "2014-04-28", "8C"),
    ("Maya", "Kowalski", "2014-06-11", "8C"), ("Elliot", "Brennan", "2014-08-25", "8C"),
    ("Poppy", "Ashworth", "2012-09-15", "9A"), ("Rohan", "Desai", "2012-11-03", "9A"),
    ("Isabel", "Quinn", "2013-01-29", "9A"), ("Leon", "Hartley", "2013-04-06", "9A"),
    ("Grace", "Adeyemi", "2013-06-18", "9A"), ("Oscar", "Pemberton", "2013-08-02", "9A"),
    ("Siân", "Pritchard", "2011-10-12", "10D"), ("Callum", "Fraser", "2011-12-24", "10D"),
    ("Zara", "Hussain", "2012-02-08", "10D"), ("Lewis", "McAllister", "2012-05-16", "10D"),
    ("Hannah", "Novak", "2012-07-04", "10D"), ("Jacob", "Ellison", "2012-08-30", "10D"),
]

# Staff: (role in the directory, title and name as letters write it, name, job title, address).
STAFF = [
    ("headteacher", "Mrs R Okonjo", "Rachel Okonjo", "Headteacher", "head"),
    ("dsl", "Mr A Khan", "Adil Khan", "Designated Safeguarding Lead (DSL)", "a.khan"),
    ("senco", "Mrs G D'Arcy", "Gemma D'Arcy", "SENCO", "g.darcy"),
    ("staff", "Ms L Carter", "Louise Carter", "Deputy DSL", "l.carter"),
    ("staff", "Mr P Evans", "Paul Evans", "Head of Year 7", "p.evans"),
    ("staff", "Miss J Patel", "Jasmine Patel", "Head of Year 9", "j.patel"),
    ("office", "Mrs S Morgan", "Susan Morgan", "Office Manager", "office"),
    ("staff", "Dr M Oyelaran", "Michael Oyelaran", "Exams Officer", "exams"),
]


def pupil(i):
    f, s, _, form = PUPILS[i]
    return f"{f} {s}", form


def staff_table():
    return ("table", ["Role", "Name", "Telephone"],
            [[job, title, f"01632 9601{n:02d}"] for n, (_, title, _, job, _) in enumerate(STAFF)])


LOREM_TERM = (
    "This half term has been busy in every year group. Thank you to all the families who came to "
    "our open evening, and to the PTA for the refreshments; the feedback from visiting families "
    "was warm and the pupils who showed visitors round were a credit to the school."
)

# ------------------------------------------------------------------------------------------
# Benign documents: (file stem, formats, title, blocks).

def benign():
    docs = []
    add = lambda stem, formats, title, blocks: docs.append((stem, formats, title, blocks))

    add("newsletter-autumn", ["pdf", "docx", "html", "txt"], "Example Academy Newsletter – Autumn 2026", [
        ("p", LOREM_TERM),
        ("h", "Celebrating success"),
        ("p", f"Congratulations to {pupil(0)[0]} and {pupil(3)[0]}, who won the Year 7 chess "
              f"tournament, and to {pupil(13)[0]} for her poem read at the Remembrance assembly. "
              f"{pupil(19)[0]} has been selected for the county under-16 football squad."),
        ("h", "SEND coffee morning"),
        ("p", "Our SENCO, Mrs D'Arcy, runs a coffee morning for parents and carers of children with "
              "special educational needs on the first Tuesday of every month at 9am in the library. "
              "You can read our SEND information report and our SEND policy on the school website."),
        ("h", "Safeguarding"),
        ("p", "Safeguarding is everyone's business. If you are worried about a child, please speak to "
              "our Designated Safeguarding Lead, Mr Khan, or to any member of staff. Children's "
              "Mental Health Week runs from 2 February; pupils will take part in activities on "
              "wellbeing, sleep and staying safe online."),
        ("h", "Who to contact"),
        staff_table(),
        ("p", "Medicines must be handed in at the school office with a signed consent form. We are "
              "a nut-free school: please do not send nuts in packed lunches, as some children have "
              "severe allergies."),
    ])
    add("newsletter-spring", ["pdf"], "Spring newsletter", [
        ("cols", [
            f"Well done to {pupil(6)[0]}, {pupil(7)[0]} and {pupil(8)[0]}, who represented the "
            "school at the regional science fair and came home with the runner-up trophy for "
            "their water filter.",
            f"The Year 9 netball team, captained by {pupil(16)[0]}, are unbeaten this season.",
        ], [
            "Flu vaccinations: the school immunisation team visits on 14 January. Children with "
            "asthma who use an inhaler may still have the nasal spray; the team will talk to "
            "families directly.",
            "Our SENCO, Mrs G D'Arcy, and our DSL, Mr A Khan, are available at parents' evening "
            "to talk about support for your child.",
        ]),
        staff_table(),
    ])
    add("newsletter-summer", ["docx", "pdf"], "Summer newsletter", [
        ("p", "As the year ends we say goodbye to Year 11 and thank them for everything they have "
              "given to the school. Results day is Thursday 20 August."),
        ("p", f"{pupil(21)[0]} and {pupil(22)[0]} completed their Duke of Edinburgh bronze "
              "expedition in the Peak District in glorious sunshine."),
        ("p", "Pupil premium: our pupil premium strategy statement for 2026–27 is published on the "
              "website. Families who think they may be eligible for free school meals can apply "
              "online in a few minutes; it is confidential and helps the school."),
        staff_table(),
    ])
    add("letter-trip-year7", ["pdf", "docx", "txt"], "Year 7 trip to the Natural History Museum", [
        ("p", "Dear Parent/Carer,"),
        ("p", "Year 7 will visit the Natural History Museum in London on Friday 12 March 2027. The "
              "coach leaves school at 7.30am and returns at about 6pm. The cost is £28, payable "
              "through ParentPay by 26 February."),
        ("p", "Please tell us on the consent form below if your child has any medical conditions or "
              "allergies, or needs medication during the day (inhalers, EpiPens), so that staff "
              "can plan for them. Children who are eligible for free school meals will be given "
              "a packed lunch."),
        ("p", "Yours faithfully,"),
        ("p", "Mr P Evans, Head of Year 7"),
        ("h", "Consent form"),
        ("p", "Child's name: ______________________   Form: ______"),
        ("p", "Medical conditions / allergies: ______________________________"),
        ("p", "Signed (parent/carer): ______________________"),
    ])
    add("letter-trip-merged", ["docx", "pdf"], "Year 9 geography field trip", [
        ("p", f"Dear Parent/Carer of {pupil(12)[0]},"),
        ("p", "Your child has a place on the Year 9 geography field trip to the coast on Tuesday 20 "
              "April. Please make sure they bring a waterproof coat, sturdy shoes and a packed "
              "lunch. The trip costs £12, which can be paid through ParentPay."),
        ("p", "Yours sincerely,"),
        ("p", "Miss J Patel, Head of Year 9"),
    ])
    add("letter-flu", ["pdf", "txt"], "Flu vaccination programme", [
        ("p", "Dear Parent/Carer,"),
        ("p", "The school-aged immunisation service will offer the nasal flu vaccine to all pupils "
              "in Years 7 to 11 on Wednesday 14 January. The vaccine is a quick spray up the nose. "
              "If your child has asthma, is taking steroid tablets or has a severely weakened "
              "immune system, the nurses may give an injection instead."),
        ("p", "Please complete the online consent form by 7 January, whether or not you want your "
              "child to be vaccinated."),
    ])
    add("letter-headlice", ["txt"], "Head lice", [
        ("p", "Dear Parent/Carer, there have been a few cases of head lice in Year 7. Please check "
              "your child's hair this weekend and treat if needed. There is no need to keep your "
              "child off school."),
    ])
    add("letter-attendance-generic", ["txt", "docx"], "Attendance", [
        ("p", "Dear Parent/Carer,"),
        ("p", "Good attendance matters. If your child is absent because of illness, please ring the "
              "attendance line before 9am on each day of absence. Holidays in term time cannot be "
              "authorised except in exceptional circumstances. If there is a medical condition "
              "that affects attendance, please speak to the Head of Year."),
    ])
    add("letter-parking", ["pdf"], "Parking at drop-off", [
        ("p", ADDRESS + "   Telephone " + PHONE),
        ("p", "Headteacher: Mrs R Okonjo   SENCO: Mrs G D'Arcy   DSL: Mr A Khan"),
        ("p", "Dear Parents and Carers,"),
        ("p", "We have had complaints from neighbours about parking on Meadow Lane at the start and "
              "end of the day. Please do not park across driveways or on the zig-zag lines, and "
              "consider walking the last part of the journey. The council's civil enforcement "
              "officers will visit next week."),
        ("p", "Thank you for your help."),
    ])
    add("timetable-7B", ["xlsx", "pdf", "csv"], "7B timetable 2026/27", [
        ("table", ["Period", "Time", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday"], [
            ["1", "08:50–09:50", "Maths (PEV)", "English (LCA)", "Science (MOY)", "History (JPA)", "French (SMO)"],
            ["2", "09:50–10:50", "English (LCA)", "Maths (PEV)", "PE (ADK)", "Geography (JPA)", "Art (GDA)"],
            ["Break", "10:50–11:10", "", "", "", "", ""],
            ["3", "11:10–12:10", "Science (MOY)", "Computing (PEV)", "Maths (PEV)", "English (LCA)", "Music (RO)"],
            ["Lunch", "12:10–13:00", "", "", "", "", ""],
            ["4", "13:00–14:00", "RE (JPA)", "Science (MOY)", "English (LCA)", "PE (ADK)", "Maths (PEV)"],
            ["5", "14:00–15:00", "Drama (LCA)", "French (SMO)", "PSHE (PEV)", "Maths (PEV)", "Science (MOY)"],
        ]),
    ])
    add("staff-duty-rota", ["xlsx", "csv"], "Duty rota – spring term", [
        ("table", ["Day", "Before school", "Break", "Lunch (canteen)", "Lunch (field)", "After school"], [
            ["Monday", "Mr P Evans", "Mrs G D'Arcy", "Ms L Carter", "Mr A Khan", "Miss J Patel"],
            ["Tuesday", "Miss J Patel", "Mr A Khan", "Mrs G D'Arcy", "Mr P Evans", "Ms L Carter"],
            ["Wednesday", "Ms L Carter", "Mr P Evans", "Miss J Patel", "Mrs G D'Arcy", "Mr A Khan"],
            ["Thursday", "Mr A Khan", "Ms L Carter", "Mr P Evans", "Miss J Patel", "Mrs G D'Arcy"],
            ["Friday", "Mrs G D'Arcy", "Miss J Patel", "Mr A Khan", "Ms L Carter", "Mr P Evans"],
        ]),
    ])
    add("staff-list", ["csv", "xlsx", "html"], "Staff list", [
        ("table", ["Name", "Role", "Email", "Telephone"],
         [[t, job, f"{a}@example-academy.sch.uk", f"01632 9601{n:02d}"]
          for n, (_, t, _, job, a) in enumerate(STAFF)]),
    ])
    add("invoice-coach", ["pdf", "xlsx"], "Invoice 4471 – Anytown Coaches Ltd", [
        ("p", "Anytown Coaches Ltd, Unit 4 Station Yard, Anytown AN3 9XY. VAT reg. GB 123 4567 89"),
        ("p", "Invoice to: Example Academy, Meadow Lane, Anytown. Invoice date 02/12/2026. Payment "
              "terms 30 days. Sort code 40-11-62, account 71234567."),
        ("table", ["Date", "Description", "Qty", "Unit price", "Total"], [
            ["12/11/2026", "53-seat coach, Year 7 museum trip", "2", "£640.00", "£1,280.00"],
            ["19/11/2026", "33-seat coach, Year 10 field trip", "1", "£410.00", "£410.00"],
            ["", "VAT at 20%", "", "", "£338.00"],
            ["", "Total due", "", "", "£2,028.00"],
        ]),
    ])
    add("invoice-catering", ["xlsx", "csv"], "Catering invoice – November", [
        ("table", ["Week commencing", "Meals served", "Free school meals", "Paid meals", "Amount"], [
            ["02/11/2026", "1,842", "512", "1,330", "£3,192.00"],
            ["09/11/2026", "1,901", "519", "1,382", "£3,316.80"],
            ["16/11/2026", "1,877", "515", "1,362", "£3,268.80"],
            ["23/11/2026", "1,865", "510", "1,355", "£3,252.00"],
        ]),
    ])
    add("governors-minutes-autumn", ["pdf", "docx"], "Full governing board – minutes, 25 November 2026", [
        ("p", "Present: Mr D Hollis (Chair), Mrs R Okonjo (Headteacher), Mrs K Abbott, Mr T Singh, "
              "Dr E Walsh, Mrs F Greene. In attendance: Mrs G D'Arcy (SENCO), Mr A Khan (DSL), "
              "Mrs S Morgan (clerk)."),
        ("h", "1. Apologies"),
        ("p", "Apologies were received from Mr J Rowe and accepted."),
        ("h", "2. SEND report"),
        ("p", "The SENCO reported that 64 pupils are on SEN support and 11 have an education, health "
              "and care plan. The most common primary needs are speech, language and communication, "
              "and social, emotional and mental health. Governors asked how the school measures the "
              "impact of interventions; the SENCO will bring data to the spring meeting."),
        ("h", "3. Safeguarding"),
        ("p", "The DSL reported 23 concerns logged on CPOMS this term, 4 referrals to children's "
              "social care and 2 early help assessments. Training for all staff on child-on-child "
              "abuse was completed in September. No individual cases were discussed."),
        ("h", "4. Pupil premium"),
        ("p", "The board reviewed the pupil premium strategy statement. Attendance of disadvantaged "
              "pupils is 91.2% against 94.6% for others; the gap has narrowed since last year."),
        ("h", "5. Suspensions and exclusions"),
        ("p", "There were 9 suspensions this term and no permanent exclusions. Governors noted the "
              "reduction."),
    ])
    add("governors-minutes-summer", ["docx", "txt"], "Governors' resources committee – minutes", [
        ("p", "Present: Mr T Singh (Chair), Mrs R Okonjo, Mrs K Abbott. Clerk: Mrs S Morgan."),
        ("p", "The committee approved the budget for 2027–28, including the roof repairs to the "
              "sports hall and two additional teaching assistants for the SEND department."),
        ("p", "The health and safety report noted two minor accidents in the playground and the "
              "annual fire risk assessment; all actions are complete."),
    ])
    send_policy = [
        ("h", "1. Aims"),
        ("p", "Example Academy is an inclusive school. We aim to identify special educational needs "
              "and disabilities (SEND) early and to make effective provision, so that every pupil "
              "can achieve well. This policy follows the SEND Code of Practice 0–25 (2015)."),
        ("h", "2. Roles and responsibilities"),
        ("p", "SENCO: Mrs G D'Arcy, telephone 01632 960102. The SENCO coordinates SEN support, "
              "works with the educational psychologist and the speech and language therapist, and "
              "leads the annual reviews of education, health and care plans (EHCPs)."),
        ("p", "The SEND governor is Dr E Walsh."),
        ("h", "3. Areas of need"),
        ("p", "The four broad areas of need are communication and interaction (including autism), "
              "cognition and learning (including dyslexia, dyspraxia and dyscalculia), social, "
              "emotional and mental health difficulties (including ADHD), and sensory and/or "
              "physical needs."),
        ("h", "4. SEN support"),
        ("p", "Where a pupil is identified as having SEN, we take action in a graduated approach: "
              "assess, plan, do, review. Parents are involved at every stage. Where a pupil does "
              "not make expected progress despite SEN support, the school may request an EHC "
              "needs assessment from the local authority."),
        ("h", "5. Medical conditions"),
        ("p", "Pupils with medical conditions such as asthma, diabetes, epilepsy and anaphylaxis have "
              "an individual healthcare plan. See our policy on supporting pupils with medical "
              "conditions."),
    ]
    add("send-policy", ["pdf", "docx", "html"], "SEND policy 2026–27", send_policy)
    safeguarding_policy = [
        ("h", "Key contacts"),
        ("table", ["Role", "Name", "Contact"], [
            ["Designated Safeguarding Lead", "Mr A Khan", "01632 960101"],
            ["Deputy DSL", "Ms L Carter", "01632 960103"],
            ["SENCO", "Mrs G D'Arcy", "01632 960102"],
            ["Headteacher", "Mrs R Okonjo", "01632 960100"],
            ["Local authority designated officer (LADO)", "Anytown Council", "01632 960999"],
        ]),
        ("h", "1. Introduction"),
        ("p", "This policy follows Keeping Children Safe in Education (2025) and Working Together to "
              "Safeguard Children (2023). Safeguarding and promoting the welfare of children is "
              "everyone's responsibility."),
        ("h", "2. Types of abuse"),
        ("p", "All staff should be aware of physical abuse, emotional abuse, sexual abuse and "
              "neglect, and of specific safeguarding issues including child sexual exploitation, "
              "child criminal exploitation and county lines, domestic abuse, female genital "
              "mutilation (FGM), forced marriage, radicalisation, and child-on-child abuse."),
        ("h", "3. Procedures"),
        ("p", "Concerns are recorded on CPOMS and passed to the DSL the same day. The DSL decides "
              "whether to make a referral to children's social care, which may lead to a child in "
              "need assessment under section 17 or an enquiry under section 47 of the Children Act "
              "1989. Allegations against staff are referred to the LADO. The school takes part in "
              "Operation Encompass."),
        ("h", "4. Children who may be more vulnerable"),
        ("p", "Looked after children, previously looked after children, children with SEND, young "
              "carers and children missing education may need extra help. The designated teacher "
              "for looked after children works with the virtual school head and attends personal "
              "education plan meetings."),
    ]
    add("safeguarding-policy", ["pdf", "docx", "html"], "Safeguarding and child protection policy", safeguarding_policy)
    add("medical-conditions-policy", ["pdf", "txt"], "Supporting pupils with medical conditions", [
        ("p", "The governing board must make arrangements for supporting pupils at school with "
              "medical conditions. The Headteacher, Mrs R Okonjo, is responsible for this policy."),
        ("p", "Individual healthcare plans (IHCPs) are written with parents and health "
              "professionals for pupils with conditions such as asthma, type 1 diabetes, epilepsy "
              "and severe allergies (anaphylaxis). Spare salbutamol inhalers and adrenaline "
              "auto-injectors are kept in the medical room."),
        ("p", "Staff who administer medication are trained each September by the school nurse."),
    ])
    add("behaviour-policy", ["docx", "pdf"], "Behaviour policy", [
        ("p", "Our behaviour policy sets out the school's expectations: ready, respectful, safe."),
        ("p", "Sanctions include a verbal warning, a detention, time in the reflection room, a "
              "suspension (previously called a fixed-term exclusion) and, as a last resort, a "
              "permanent exclusion. Only the Headteacher can suspend or permanently exclude a "
              "pupil, following the Department for Education's statutory guidance."),
        ("p", "Alternative provision and managed moves may be considered to avoid exclusion."),
    ])
    add("accessibility-plan", ["pdf"], "Accessibility plan 2025–2028", [
        ("table", ["Aim", "Action", "Lead", "Date"], [
            ["Improve access to the curriculum", "Staff training on dyslexia-friendly resources", "SENCO", "Spring 2027"],
            ["Improve the physical environment", "Install a lift to the science block", "Business manager", "Summer 2027"],
            ["Improve written information", "Letters available in large print and translated", "Office manager", "Ongoing"],
        ]),
    ])
    add("exam-entries", ["xlsx", "csv"], "Exam entries summary – summer 2027", [
        ("table", ["Subject", "Board", "Specification", "Tier", "Entries", "Fee per entry", "Total"], [
            ["English Language", "AQA", "8700", "—", "182", "£46.05", "£8,381.10"],
            ["Mathematics", "Edexcel", "1MA1", "Higher", "97", "£48.30", "£4,685.10"],
            ["Mathematics", "Edexcel", "1MA1", "Foundation", "85", "£48.30", "£4,105.50"],
            ["Combined Science", "AQA", "8464", "Higher", "110", "£92.10", "£10,131.00"],
            ["Geography", "OCR", "J383", "—", "64", "£46.05", "£2,947.20"],
            ["French", "AQA", "8658", "Higher", "31", "£46.05", "£1,427.55"],
        ]),
    ])
    add("exam-timetable", ["pdf", "docx"], "Mock exam timetable – Year 11", [
        ("table", ["Date", "Session", "Subject", "Paper", "Duration", "Room"], [
            ["Mon 11/01/2027", "AM", "English Language", "Paper 1", "1h 45m", "Sports hall"],
            ["Mon 11/01/2027", "PM", "History", "Paper 1", "2h", "Sports hall"],
            ["Tue 12/01/2027", "AM", "Mathematics", "Paper 1 (non-calculator)", "1h 30m", "Sports hall"],
            ["Wed 13/01/2027", "AM", "Combined Science", "Biology 1", "1h 15m", "Sports hall"],
        ]),
        ("p", "Candidates with access arrangements (extra time, a reader or a scribe) sit in the "
              "library; the exams officer, Dr M Oyelaran, will confirm rooms by email."),
    ])
    add("lunch-menu", ["pdf", "docx"], "Lunch menu – week 1", [
        ("table", ["Day", "Main", "Vegetarian", "Dessert", "Allergens"], [
            ["Monday", "Beef lasagne", "Vegetable lasagne", "Apple crumble", "Gluten, milk"],
            ["Tuesday", "Chicken curry and rice", "Chickpea curry", "Fruit yoghurt", "Milk"],
            ["Wednesday", "Roast pork, potatoes", "Quorn roast", "Sponge and custard", "Gluten, egg, milk"],
            ["Thursday", "Fish fingers and chips", "Veggie fingers", "Fresh fruit", "Fish, gluten"],
            ["Friday", "Pizza and wedges", "Margherita pizza", "Cookie", "Gluten, milk"],
        ]),
        ("p", "Please tell the kitchen about any allergy or special diet through the school office."),
    ])
    add("term-dates", ["txt", "html"], "Term dates 2026–27", [
        ("p", "Autumn term: Thursday 3 September to Friday 18 December 2026 (half term 26–30 October)."),
        ("p", "Spring term: Monday 4 January to Friday 26 March 2027 (half term 15–19 February)."),
        ("p", "Summer term: Monday 12 April to Wednesday 21 July 2027 (half term 31 May–4 June)."),
        ("p", "INSET days: 1 and 2 September, 4 January, 12 April, 22 July."),
    ])
    add("uniform-list", ["html", "txt"], "Uniform", [
        ("p", "Black blazer with school badge; white shirt; house tie; black trousers or skirt; "
              "black shoes. PE: navy polo, navy shorts, trainers. Uniform is available from "
              "Anytown Schoolwear; our second-hand uniform shop opens on Fridays."),
    ])
    add("football-team-sheet", ["xlsx", "csv", "pdf"], "Under-14 football v Hillside – team sheet", [
        ("table", ["Name", "Form", "Position"], [
            [pupil(i)[0], pupil(i)[1], pos] for i, pos in
            [(7, "Goalkeeper"), (9, "Defender"), (11, "Defender"), (15, "Midfield"),
             (17, "Midfield"), (13, "Forward"), (6, "Forward")]
        ]),
        ("p", "Kick-off 3.45pm at Hillside. Parents welcome. Bring water and shin pads."),
    ])
    add("reading-challenge", ["csv", "xlsx"], "Reading challenge – books read this term", [
        ("table", ["Pupil", "Form", "Books read", "House"], [
            [pupil(i)[0], pupil(i)[1], str(5 + (i * 7) % 11), ["Ash", "Beech", "Oak"][i % 3]]
            for i in range(0, 12)
        ]),
    ])
    add("parents-evening", ["pdf", "xlsx"], "Year 9 parents' evening – appointments", [
        ("table", ["Time", "Pupil", "Teacher", "Room"], [
            [f"16:{m:02d}", pupil(i)[0], t, r] for m, i, t, r in
            [(0, 12, "Miss J Patel", "B12"), (5, 13, "Miss J Patel", "B12"), (10, 14, "Mr P Evans", "M4"),
             (15, 15, "Mrs G D'Arcy", "Library"), (20, 16, "Mr A Khan", "H2"), (25, 17, "Ms L Carter", "E1")]
        ]),
        ("p", "Appointments are 5 minutes. The SENCO and the DSL are available in the library."),
    ])
    add("school-council-minutes", ["docx", "txt"], "School council – minutes", [
        ("p", f"Present: {pupil(1)[0]} (7B), {pupil(8)[0]} (8C), {pupil(14)[0]} (9A), "
              f"{pupil(20)[0]} (10D); Ms L Carter."),
        ("p", "The council discussed ideas for Mental Health Awareness Week: a wellbeing walk, a "
              "quiet room at lunchtime and posters about who to talk to. The council asked for "
              "more water fountains and longer lunch queues to be looked at."),
    ])
    add("job-advert-senco", ["pdf", "docx"], "Vacancy: SENCO", [
        ("p", "Example Academy seeks a SENCO from September 2027, to lead our inclusive SEND "
              "department of 12 teaching assistants. You will hold the National Award for SEN "
              "Coordination or be willing to complete it, and have experience of EHCP annual "
              "reviews and of supporting pupils with autism, ADHD and dyslexia."),
        ("p", "Salary: MPS/UPS plus SEN allowance. Closing date 15 January 2027. Safer "
              "recruitment: the post is subject to an enhanced DBS check."),
    ])
    add("job-description-dsl", ["docx"], "Job description: Designated Safeguarding Lead", [
        ("p", "The DSL takes lead responsibility for safeguarding and child protection, including "
              "online safety. The DSL refers cases of suspected abuse to children's social care, "
              "attends child protection conferences and core group meetings, and keeps the "
              "Headteacher informed. Reports to: the Headteacher."),
    ])
    add("trip-risk-assessment", ["xlsx", "pdf"], "Risk assessment – Year 7 museum trip", [
        ("table", ["Hazard", "Who is at risk", "Control measures", "Responsible"], [
            ["Road traffic", "Pupils, staff", "Cross at crossings; hi-vis vests", "Mr P Evans"],
            ["Pupil lost", "Pupils", "Groups of 10 with a named adult; meeting point", "Mr P Evans"],
            ["Medical emergency", "Pupils", "First aider on trip; pupils' inhalers and EpiPens carried by group leaders", "Ms L Carter"],
            ["Allergies", "Pupils", "Packed lunches checked; no nuts", "Mrs S Morgan"],
        ]),
    ])
    add("pta-minutes", ["txt"], "PTA meeting – minutes", [
        ("p", "The Christmas fair raised £1,846. Thanks to all volunteers. The next event is the "
              "quiz night on 5 February; tickets £5. The PTA will fund new books for the library "
              "and a bench in memory of a former governor."),
    ])
    add("curriculum-overview", ["pdf", "html"], "Year 8 curriculum overview", [
        ("cols", [
            "English: Autumn – Gothic fiction and descriptive writing. Spring – Shakespeare's "
            "Much Ado About Nothing. Summer – poetry from other cultures.",
            "Maths: algebraic expressions, ratio and proportion, area and volume, probability.",
        ], [
            "Science: cells and organisation, chemical reactions, forces and motion, ecosystems.",
            "Humanities: the Industrial Revolution; rivers and flooding; belief in the modern world.",
        ]),
    ])
    add("options-booklet", ["pdf"], "Year 9 options booklet", [
        ("p", "Choosing your GCSE options is an important step. Everyone studies English, maths, "
              "science, PE and PSHE. You choose three further subjects from the blocks below."),
        ("table", ["Block A", "Block B", "Block C"], [
            ["History", "Geography", "French"],
            ["Computer Science", "Art and Design", "Music"],
            ["Drama", "Business", "Food Preparation"],
        ]),
        ("p", "If your child has special educational needs, the SENCO, Mrs D'Arcy, will talk to "
              "you about the right choices."),
    ])
    add("pupil-premium-strategy", ["pdf", "docx"], "Pupil premium strategy statement 2026–27", [
        ("table", ["Detail", "Data"], [
            ["Number of pupils in school", "1,104"],
            ["Proportion of pupil premium eligible pupils", "27%"],
            ["Pupil premium funding allocation this year", "£312,480"],
            ["Statement authorised by", "Mrs R Okonjo, Headteacher"],
            ["Pupil premium lead", "Ms L Carter"],
        ]),
        ("p", "Our intention is that all pupils, irrespective of their background, make good "
              "progress. Disadvantaged pupils' attendance and reading age are our first priorities."),
    ])
    add("ofsted-letter", ["txt", "pdf"], "Ofsted inspection", [
        ("p", "Dear Parents and Carers, I am delighted to share the report of our recent Ofsted "
              "inspection. Inspectors found that pupils are safe and well cared for, that the "
              "arrangements for safeguarding are effective, and that pupils with SEND are well "
              "supported. The full report is on the Ofsted website."),
    ])
    add("house-points", ["xlsx"], "House points – autumn", [
        ("table", ["House", "Year 7", "Year 8", "Year 9", "Year 10", "Total"], [
            ["Ash", "412", "388", "301", "276", "1,377"],
            ["Beech", "398", "402", "322", "259", "1,381"],
            ["Oak", "427", "371", "315", "281", "1,394"],
        ]),
    ])
    add("cover-rota", ["csv"], "Cover – Thursday", [
        ("table", ["Period", "Class", "Absent teacher", "Cover", "Room", "Work set"], [
            ["1", "7B Maths", "Mr P Evans", "Mrs S Morgan", "M4", "Textbook p. 42–43"],
            ["3", "9A English", "Ms L Carter", "Mr A Khan", "E1", "Reading and questions"],
            ["5", "10D Science", "Dr M Oyelaran", "Mrs G D'Arcy", "S2", "Revision quiz"],
        ]),
    ])
    return docs


# ------------------------------------------------------------------------------------------
# Sensitive documents: each must be held.

def sensitive():
    docs = []
    add = lambda stem, formats, title, blocks: docs.append((stem, formats, title, blocks))
    name, form = pupil(4)
    add("exclusion-letter", ["pdf", "docx", "txt"], "Suspension", [
        ("p", ADDRESS),
        ("p", "Dear Mr and Mrs Lindqvist,"),
        # The sentence wraps: in a PDF the pupil's name ends one line and the exclusion starts
        # the next.
        ("p", f"I am writing to confirm my decision, made today, that your daughter {name} "
              "is to receive a fixed-term exclusion of two school days, on 3 and 4 December, "
              "for persistent disruptive behaviour. During the suspension you must make sure she "
              "is not present in a public place during school hours."),
        ("p", "You have the right to make representations to the governing board. A reintegration "
              "meeting will be held on 7 December at 8.30am."),
        ("p", "Yours sincerely,"),
        ("p", "Mrs R Okonjo, Headteacher"),
    ])
    name2, _ = pupil(10)
    add("ehcp-review-letter", ["pdf", "docx"], "EHCP annual review", [
        ("p", f"Dear Ms Kowalski,"),
        ("p", f"The annual review of the education, health and care plan for {name2} will take "
              "place on 9 December at 10am with the SENCO and the educational psychologist. "
              "Please bring any recent reports from the speech and language therapist."),
        ("p", "Yours sincerely, Mrs G D'Arcy, SENCO"),
    ])
    name3, _ = pupil(1)
    add("staff-briefing", ["pdf"], "Staff briefing – confidential", [
        ("cols", [
            "Fire drill on Wednesday at 10.15; please take registers out with you. Cover for "
            "Year 7 trip is posted in the staffroom.",
        ], [
            f"Please be aware that {name3} in 7B has been diagnosed with type 1 diabetes; "
            "he will check his blood sugar before lunch and has hypo supplies in his bag.",
        ]),
    ])
    add("sen-register", ["xlsx", "csv", "pdf"], "SEN register – autumn 2026", [
        ("table", ["Name", "Form", "Primary need", "SEN status", "Notes"], [
            [pupil(i)[0], pupil(i)[1], need, status, note] for i, need, status, note in [
                (2, "SLCN", "SEN support", "Speech and language therapy weekly"),
                (9, "SEMH", "EHCP", "Reduced timetable; CAMHS referral open"),
                (14, "SpLD", "SEN support", "Dyslexia; coloured overlays"),
                (20, "ASD", "EHCP", "Sensory breaks; 1:1 TA"),
            ]
        ]),
    ])
    add("medical-needs", ["csv", "xlsx", "html"], "Pupils with medical needs", [
        ("table", ["Pupil", "DOB", "Form", "Condition", "Medication"], [
            [pupil(i)[0], "/".join(reversed(PUPILS[i][2].split("-"))), pupil(i)[1], cond, med]
            for i, cond, med in [
                (0, "Asthma", "Salbutamol inhaler"),
                (5, "Anaphylaxis – peanut allergy", "EpiPen x2"),
                (11, "Epilepsy", "Buccal midazolam"),
            ]
        ]),
    ])
    name4, _ = pupil(16)
    add("cp-referral", ["pdf", "docx"], "Multi-agency referral form", [
        ("p", "OFFICIAL-SENSITIVE"),
        ("p", f"Child's name: {name4}"),
        ("p", "Date of birth: 18/06/2013"),
        ("p", "Reason for referral: Grace disclosed to her form tutor that there is often no food "
              "at home and that she is left alone overnight. We are concerned about neglect."),
        ("p", "Referrer: Mr A Khan, DSL"),
    ])
    add("behaviour-log", ["csv", "xlsx"], "Behaviour log – week 12", [
        ("table", ["Date", "Pupils involved", "Incident", "Outcome"], [
            ["16/11/2026", pupil(19)[0], "Fight at lunchtime", "Suspension (2 days)"],
            ["17/11/2026", pupil(22)[0], "Late to lesson", "Detention"],
            ["18/11/2026", pupil(23)[0], "Threatening behaviour", "Permanent exclusion considered"],
        ]),
    ])
    add("class-list", ["xlsx", "csv"], "7B class list", [
        ("table", ["Surname", "Forename", "Date of birth", "Form"], [
            [PUPILS[i][1], PUPILS[i][0], "/".join(reversed(PUPILS[i][2].split("-"))), PUPILS[i][3]]
            for i in range(6)
        ]),
    ])
    add("pupil-premium-list", ["xlsx"], "Pupil premium – 8C", [
        ("table", ["Name", "Form", "FSM", "Pupil premium", "Looked after"], [
            [pupil(i)[0], pupil(i)[1], fsm, pp, lac] for i, fsm, pp, lac in [
                (6, "Y", "Y", "N"), (7, "N", "N", "N"), (8, "Y", "Y", "N"), (9, "N", "Y", "Y"),
            ]
        ]),
    ])
    return docs
